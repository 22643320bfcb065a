//! `GET /jwks.json` (SPEC §6): the public signing and verification keys, each with its
//! `kid`; 404 for HS* algorithms, whose key is a shared secret.

use http::{Response, StatusCode};

use super::json;
use crate::body::Body;
use crate::config::Config;
use crate::error::GatewayError;

pub fn jwks(config: &Config) -> Result<Response<Body>, GatewayError> {
    let set = config.tokens.keys.jwks().ok_or(GatewayError::NotFound)?;
    let value = serde_json::to_value(set).map_err(|e| GatewayError::Internal(Box::new(e)))?;
    let mut r = json(StatusCode::OK, &value);
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=300"),
    );
    Ok(r)
}
