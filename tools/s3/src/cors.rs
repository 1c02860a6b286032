//! CORS: a bucket's rules, the preflight `OPTIONS` answer (before any signature check, as S3
//! answers it) and the headers of actual cross-origin requests.
//!
//! Invariants:
//! - The first rule that matches the origin, the method and every requested header wins, in the
//!   order the configuration lists them (S3's rule).
//! - An origin or header pattern holds at most one `*`, which matches any run of characters;
//!   header names compare case-insensitively, origins and methods exactly.
//! - A configuration holds 1 to 100 rules with methods among GET, PUT, HEAD, POST and DELETE.

use http::{HeaderMap, HeaderValue, Method};
use s3s::dto;
use s3s::{s3_error, S3Result};
use serde::{Deserialize, Serialize};

/// S3's most CORS rules in one configuration.
pub const RULES_MAX: usize = 100;

/// One CORS rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    /// Its id.
    #[serde(default)]
    pub id: Option<String>,
    /// Origins (each with at most one `*`).
    pub allowed_origins: Vec<String>,
    /// Methods.
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for (each with at most one `*`).
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Response headers the browser may show the page.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// How long a browser may cache the preflight answer.
    #[serde(default)]
    pub max_age_seconds: Option<i32>,
}

/// Matches `pattern` (with at most one `*`) against `s`.
pub fn wildcard_match(pattern: &str, s: &str, ignore_case: bool) -> bool {
    let (p, s) = if ignore_case {
        (pattern.to_ascii_lowercase(), s.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), s.to_owned())
    };
    match p.split_once('*') {
        None => p == s,
        Some((head, tail)) => s.len() >= head.len() + tail.len() && s.starts_with(head) && s.ends_with(tail),
    }
}

/// The rules of an S3 configuration, checked.
///
/// # Errors
/// `MalformedXML` for no rules or too many, `InvalidRequest` for an unsupported method or a
/// pattern with more than one `*`.
pub fn from_s3(c: &dto::CORSConfiguration) -> S3Result<Vec<CorsRule>> {
    if c.cors_rules.is_empty() || c.cors_rules.len() > RULES_MAX {
        return Err(s3_error!(MalformedXML, "A CORS configuration holds 1 to 100 rules"));
    }
    let mut out = Vec::with_capacity(c.cors_rules.len());
    for r in &c.cors_rules {
        for m in &r.allowed_methods {
            if !["GET", "PUT", "HEAD", "POST", "DELETE"].contains(&m.as_str()) {
                return Err(s3_error!(
                    InvalidRequest,
                    "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                ));
            }
        }
        let headers = r.allowed_headers.clone().unwrap_or_default();
        for p in r.allowed_origins.iter().chain(&headers) {
            if p.matches('*').count() > 1 {
                return Err(s3_error!(InvalidRequest, "`{p}` can not have more than one wildcard."));
            }
        }
        if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
            return Err(s3_error!(MalformedXML, "A CORS rule needs an AllowedOrigin and an AllowedMethod"));
        }
        out.push(CorsRule {
            id: r.id.clone(),
            allowed_origins: r.allowed_origins.clone(),
            allowed_methods: r.allowed_methods.clone(),
            allowed_headers: headers,
            expose_headers: r.expose_headers.clone().unwrap_or_default(),
            max_age_seconds: r.max_age_seconds,
        });
    }
    Ok(out)
}

/// The S3 form of the rules.
pub fn to_s3(rules: &[CorsRule]) -> Vec<dto::CORSRule> {
    rules
        .iter()
        .map(|r| dto::CORSRule {
            id: r.id.clone(),
            allowed_origins: r.allowed_origins.clone(),
            allowed_methods: r.allowed_methods.clone(),
            allowed_headers: (!r.allowed_headers.is_empty()).then(|| r.allowed_headers.clone()),
            expose_headers: (!r.expose_headers.is_empty()).then(|| r.expose_headers.clone()),
            max_age_seconds: r.max_age_seconds,
        })
        .collect()
}

/// The first rule allowing `origin` to send `method` with `headers`.
pub fn find<'a>(rules: &'a [CorsRule], origin: &str, method: &str, headers: &[String]) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.allowed_origins.iter().any(|o| wildcard_match(o, origin, false))
            && r.allowed_methods.iter().any(|m| m == method)
            && headers.iter().all(|h| r.allowed_headers.iter().any(|a| wildcard_match(a, h, true)))
    })
}

/// Adds the CORS answer of `rule` for `origin` to `headers`.
pub fn answer(headers: &mut HeaderMap, rule: &CorsRule, origin: &str, preflight: Option<&[String]>) {
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    let any_origin = rule.allowed_origins.iter().any(|o| o == "*");
    put("access-control-allow-origin", if any_origin { "*".to_owned() } else { origin.to_owned() });
    put("access-control-allow-methods", rule.allowed_methods.join(", "));
    if !any_origin {
        put("access-control-allow-credentials", "true".to_owned());
    }
    if !rule.expose_headers.is_empty() {
        put("access-control-expose-headers", rule.expose_headers.join(", "));
    }
    if let Some(requested) = preflight {
        if !requested.is_empty() {
            put("access-control-allow-headers", requested.join(", "));
        }
        if let Some(age) = rule.max_age_seconds {
            put("access-control-max-age", age.to_string());
        }
    }
    put("vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".to_owned());
}

/// The headers a preflight asks for (`Access-Control-Request-Headers`), lowercase.
pub fn requested_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("access-control-request-headers")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// The bucket a path-style request names (`/BUCKET/...`).
pub fn bucket_of_path(path: &str) -> Option<&str> {
    let b = path.trim_start_matches('/').split('/').next()?;
    (!b.is_empty()).then_some(b)
}

/// True for a CORS preflight: `OPTIONS`.
pub fn is_preflight(method: &Method) -> bool {
    method == Method::OPTIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        CorsRule {
            id: None,
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            allowed_methods: methods.iter().map(|s| (*s).to_owned()).collect(),
            allowed_headers: headers.iter().map(|s| (*s).to_owned()).collect(),
            expose_headers: vec![],
            max_age_seconds: None,
        }
    }

    #[test]
    fn wildcards_match_one_run_of_characters() {
        assert!(wildcard_match("*", "https://a.example", false));
        assert!(wildcard_match("https://*.example.com", "https://www.example.com", false));
        assert!(!wildcard_match("https://*.example.com", "http://www.example.com", false));
        assert!(wildcard_match("x-amz-*", "X-Amz-Date", true));
        assert!(!wildcard_match("abc", "ABC", false));
    }

    #[test]
    fn the_first_rule_matching_origin_method_and_every_header_wins() {
        let rules = vec![
            rule(&["https://a.example"], &["GET"], &[]),
            rule(&["*"], &["GET", "PUT"], &["x-amz-*", "content-type"]),
        ];
        assert_eq!(find(&rules, "https://a.example", "GET", &[]), Some(&rules[0]));
        assert_eq!(find(&rules, "https://a.example", "GET", &["content-type".into()]), Some(&rules[1]));
        assert_eq!(find(&rules, "https://b.example", "PUT", &["x-amz-date".into()]), Some(&rules[1]));
        assert_eq!(find(&rules, "https://b.example", "DELETE", &[]), None);
        assert_eq!(find(&rules, "https://b.example", "PUT", &["authorization".into()]), None);
    }
}
