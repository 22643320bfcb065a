//! OpenID Connect Discovery 1.0: `{issuer}/.well-known/openid-configuration`, checked for
//! what Gatehouse relies on, and the provider's JWKS.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::http::{allowed_url, HttpError, IdpHttp};

/// What discovery told us, checked.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: String,
    pub end_session_endpoint: Option<String>,
    /// The ID-token algorithms the provider advertises that we accept (asymmetric only).
    pub algorithms: Vec<Algorithm>,
    /// `client_secret_basic` unless the provider supports only `client_secret_post`.
    pub secret_in_body: bool,
    /// RFC 9207: the provider sends `iss` with its authorization responses.
    pub sends_iss: bool,
    /// The `prompt` that makes the provider ask which account (or for a sign-in) even with a
    /// session of its own, for *Sign in as someone else*; `None` when it offers neither.
    pub switch_account_prompt: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
struct Document {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    jwks_uri: String,
    end_session_endpoint: Option<String>,
    #[serde(default)]
    id_token_signing_alg_values_supported: Vec<String>,
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    /// OpenID Connect Prompt Create 1.0 §4.
    prompt_values_supported: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("the discovery document at {url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("the discovery document at {url} is not valid: {detail}")]
    Invalid { url: String, detail: String },
}

/// The discovery URL for an issuer (OpenID Connect Discovery §4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The JWS algorithms we verify ID tokens with: asymmetric only, never `none` or HMAC (an
/// HMAC "signed" with a provider's public key would verify with that public key).
pub fn accepted_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

pub async fn discover(http: &IdpHttp, issuer: &str) -> Result<Discovered, DiscoveryError> {
    let url = discovery_url(issuer);
    let r = http.get_json(&url, None).await?;
    if !r.status.is_success() {
        return Err(DiscoveryError::Status {
            url,
            status: r.status.as_u16(),
        });
    }
    let invalid = |detail: String| DiscoveryError::Invalid {
        url: url.clone(),
        detail,
    };
    let doc: Document = serde_json::from_value(r.body).map_err(|e| invalid(format!("{e}")))?;
    if doc.issuer != issuer {
        return Err(invalid(format!(
            "it names the issuer `{}`, but the config says `{issuer}`; they must be identical \
             (check the issuer's trailing slash and realm path)",
            doc.issuer
        )));
    }
    for (name, endpoint) in [
        ("authorization_endpoint", Some(&doc.authorization_endpoint)),
        ("token_endpoint", Some(&doc.token_endpoint)),
        ("jwks_uri", Some(&doc.jwks_uri)),
        ("userinfo_endpoint", doc.userinfo_endpoint.as_ref()),
        ("end_session_endpoint", doc.end_session_endpoint.as_ref()),
    ] {
        if let Some(e) = endpoint {
            if !allowed_url(e) {
                return Err(invalid(format!(
                    "{name} `{e}` is not https (plain http only on a loopback address)"
                )));
            }
        }
    }
    if let Some(methods) = &doc.code_challenge_methods_supported {
        if !methods.iter().any(|m| m == "S256") {
            return Err(invalid("the provider does not support PKCE S256".into()));
        }
    }
    let algorithms: Vec<Algorithm> = if doc.id_token_signing_alg_values_supported.is_empty() {
        // Discovery §3 makes the list required and RS256 mandatory to implement.
        vec![Algorithm::RS256]
    } else {
        doc.id_token_signing_alg_values_supported
            .iter()
            .filter_map(|a| accepted_algorithm(a))
            .collect()
    };
    if algorithms.is_empty() {
        return Err(invalid(format!(
            "id_token_signing_alg_values_supported ({}) names no asymmetric algorithm Gatehouse \
             accepts (RS*, PS*, ES256, ES384, EdDSA)",
            doc.id_token_signing_alg_values_supported.join(", ")
        )));
    }
    let secret_in_body = doc.token_endpoint_auth_methods_supported.is_some_and(|m| {
        !m.iter().any(|m| m == "client_secret_basic") && m.iter().any(|m| m == "client_secret_post")
    });
    Ok(Discovered {
        authorization_endpoint: doc.authorization_endpoint,
        token_endpoint: doc.token_endpoint,
        userinfo_endpoint: doc.userinfo_endpoint,
        jwks_uri: doc.jwks_uri,
        end_session_endpoint: doc.end_session_endpoint,
        algorithms,
        secret_in_body,
        sends_iss: doc.authorization_response_iss_parameter_supported,
        switch_account_prompt: switch_account_prompt(
            issuer,
            doc.prompt_values_supported.as_deref(),
        ),
    })
}

/// Which `prompt` asks for another account: `select_account` (a choice among accounts, or a
/// new one) where the provider lists it, else `login` (a fresh sign-in) where it lists that.
/// Most providers list nothing: then `login`, which OpenID Connect Core defines and they take
/// — but Google, which lists nothing and refuses `login`, takes `select_account`. A value a
/// provider does not take fails the whole sign-in there (oidc-provider: "unsupported prompt
/// value requested"), so nothing is sent that it says it does not take.
fn switch_account_prompt(issuer: &str, listed: Option<&[String]>) -> Option<&'static str> {
    match listed {
        Some(values) => ["select_account", "login"]
            .into_iter()
            .find(|p| values.iter().any(|v| v == p)),
        None if issuer.trim_end_matches('/') == "https://accounts.google.com" => {
            Some("select_account")
        }
        None => Some("login"),
    }
}

/// The provider's signing keys; keys we cannot use (encryption keys, unknown types) are
/// skipped rather than failing the set.
pub async fn fetch_jwks(http: &IdpHttp, url: &str) -> Result<Vec<Jwk>, DiscoveryError> {
    let r = http.get_json(url, None).await?;
    if !r.status.is_success() {
        return Err(DiscoveryError::Status {
            url: url.to_string(),
            status: r.status.as_u16(),
        });
    }
    let keys = r
        .body
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| DiscoveryError::Invalid {
            url: url.to_string(),
            detail: "no `keys` list".into(),
        })?;
    Ok(keys
        .iter()
        .filter(|k| k.get("use").and_then(|u| u.as_str()) != Some("enc"))
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::switch_account_prompt;

    #[test]
    fn another_account_is_asked_for_only_in_a_way_the_provider_takes() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let keycloak = "https://sso.example.com/realms/corp";
        for (issuer, listed, prompt) in [
            (keycloak, None, Some("login")),
            ("https://accounts.google.com", None, Some("select_account")),
            ("https://accounts.google.com/", None, Some("select_account")),
            (
                keycloak,
                Some(list(&["none", "login", "consent", "select_account"])),
                Some("select_account"),
            ),
            (
                keycloak,
                Some(list(&["none", "login", "consent"])),
                Some("login"),
            ),
            (keycloak, Some(list(&["none", "consent"])), None),
            (keycloak, Some(Vec::new()), None),
        ] {
            assert_eq!(
                switch_account_prompt(issuer, listed.as_deref()),
                prompt,
                "{issuer} {listed:?}"
            );
        }
    }
}
