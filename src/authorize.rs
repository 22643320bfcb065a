//! Phase 5 (SPEC §7): may this identity do this method on this route? Pure. A [`Permit`] is
//! built only here, and forwarding takes one, so a request that skipped authorization does
//! not compile.

use crate::authenticate::Identity;
use crate::route::{Matched, RuleMatch};

/// Proof that a request was authorized (or is on a public path).
#[derive(Debug)]
pub struct Permit {
    _private: (),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    #[error("the user has none of the roles the route allows")]
    RouteRole,
    #[error("the user has none of the roles the rule allows")]
    RuleRole,
    #[error("no rule allows this method here")]
    MethodNotListed,
}

fn has_any(roles: &[String], allowed: &[String]) -> bool {
    allowed.is_empty() || allowed.iter().any(|a| roles.contains(a))
}

/// A public path needs no identity.
pub fn public(matched: &Matched<'_>) -> Option<Permit> {
    matched.public.then_some(Permit { _private: () })
}

/// A rule narrows the route: both the route's and the rule's `allow_roles` must hold.
pub fn authorize(matched: &Matched<'_>, identity: &Identity) -> Result<Permit, Forbidden> {
    let roles = identity.roles();
    if !has_any(roles, &matched.route.allow_roles) {
        return Err(Forbidden::RouteRole);
    }
    match matched.rule {
        RuleMatch::None => {}
        RuleMatch::Rule(rule) => {
            if !has_any(roles, &rule.allow_roles) {
                return Err(Forbidden::RuleRole);
            }
        }
        RuleMatch::MethodNotListed => return Err(Forbidden::MethodNotListed),
    }
    Ok(Permit { _private: () })
}
