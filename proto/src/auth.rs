//! Management API tokens: scopes, and how a presented secret is checked.
//!
//! A token is a random secret (`nmb_` + 43 characters); only its SHA-256 (hex) is stored, by
//! the control plane and by every node it is pushed to. A token carries scopes in Cloudflare's
//! style: `<product>:read` or `<product>:edit` (edit implies read), or `admin` (everything,
//! including tokens and fault injection). The control plane and every node decide with the one
//! function here, [`Grants::allows`], so the two cannot disagree.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// What a management route touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    Kv,
    D1,
    R2,
    Queues,
    /// Pages projects and their deployments (the control plane).
    Pages,
    /// Deployments (the control plane) and what a node serves.
    Workers,
    /// Membership, status, Durable Object placement, `/metrics`.
    Cluster,
}

impl Product {
    pub const ALL: [Product; 7] =
        [Product::Kv, Product::D1, Product::R2, Product::Queues, Product::Pages, Product::Workers, Product::Cluster];

    pub fn as_str(self) -> &'static str {
        match self {
            Product::Kv => "kv",
            Product::D1 => "d1",
            Product::R2 => "r2",
            Product::Queues => "queues",
            Product::Pages => "pages",
            Product::Workers => "workers",
            Product::Cluster => "cluster",
        }
    }
}

/// Read-only or read-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Read,
    Edit,
}

impl Access {
    /// Reads are `GET` and `HEAD`; every other method edits.
    pub fn of_method(method: &str) -> Access {
        if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD") {
            Access::Read
        } else {
            Access::Edit
        }
    }
}

/// One scope a token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Everything, including tokens and fault injection.
    Admin,
    Product(Product, Access),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Product(p, Access::Read) => write!(f, "{}:read", p.as_str()),
            Scope::Product(p, Access::Edit) => write!(f, "{}:edit", p.as_str()),
        }
    }
}

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scope `{0}`: use admin, or <product>:read|edit with product one of kv, d1, r2, queues, workers, cluster"
)]
pub struct BadScope(pub String);

impl std::str::FromStr for Scope {
    type Err = BadScope;

    fn from_str(s: &str) -> Result<Self, BadScope> {
        if s == "admin" {
            return Ok(Scope::Admin);
        }
        let bad = || BadScope(s.to_string());
        let (product, access) = s.split_once(':').ok_or_else(bad)?;
        let product = Product::ALL.into_iter().find(|p| p.as_str() == product).ok_or_else(bad)?;
        let access = match access {
            "read" => Access::Read,
            "edit" => Access::Edit,
            _ => return Err(bad()),
        };
        Ok(Scope::Product(product, access))
    }
}

/// The scopes of one token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(Vec<Scope>);

impl Grants {
    pub fn admin() -> Self {
        Grants(vec![Scope::Admin])
    }

    /// Parses every scope; the first unknown one is the error.
    pub fn parse<S: AsRef<str>>(scopes: &[S]) -> Result<Self, BadScope> {
        scopes.iter().map(|s| s.as_ref().parse()).collect::<Result<Vec<_>, _>>().map(Grants)
    }

    /// `None` asks for `admin` itself (tokens, faults).
    pub fn allows(&self, product: Option<Product>, access: Access) -> bool {
        self.0.iter().any(|scope| match (scope, product) {
            (Scope::Admin, _) => true,
            (Scope::Product(p, granted), Some(wanted)) => *p == wanted && *granted >= access,
            (Scope::Product(..), None) => false,
        })
    }

    pub fn scopes(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

/// The stored form of a token: SHA-256 of the secret, lowercase hex.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `s` looks like a stored hash (64 lowercase hex digits).
pub fn is_token_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The secret a `Authorization: Bearer …` header presents, if it has that form.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_implies_read_and_products_stay_apart() {
        let grants = Grants::parse(&["kv:edit", "d1:read"]).expect("scopes");
        assert!(grants.allows(Some(Product::Kv), Access::Read));
        assert!(grants.allows(Some(Product::Kv), Access::Edit));
        assert!(grants.allows(Some(Product::D1), Access::Read));
        assert!(!grants.allows(Some(Product::D1), Access::Edit));
        assert!(!grants.allows(Some(Product::Cluster), Access::Read));
        assert!(!grants.allows(None, Access::Read), "only admin manages tokens");
        assert!(Grants::admin().allows(None, Access::Edit));
        assert_eq!(grants.scopes(), vec!["kv:edit", "d1:read"]);
    }

    #[test]
    fn unknown_scopes_are_refused() {
        for bad in ["", "kv", "kv:write", "dns:read", "admin:read", "KV:read"] {
            assert!(Grants::parse(&[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
        assert!(is_token_hash(&token_hash("x")));
        assert!(!is_token_hash("ABC"));
    }
}
