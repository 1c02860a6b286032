//! Bucket policies: S3's JSON policy language, parsed and checked when set, and evaluated for
//! every request on the bucket.
//!
//! Invariants:
//! - An explicit `Deny` that matches wins over everything, the bucket owner included (except
//!   for the owner's own policy operations, so an owner can always repair a policy, as in S3).
//! - An `Allow` that matches grants the request; otherwise the ACLs decide.
//! - A statement matches when its principal, action, resource and every condition match.
//!   `NotPrincipal`, `NotAction` and `NotResource` match everything their list does not.
//! - Actions match case-insensitively, resources case-sensitively; both take `*` and `?`.
//! - Condition operators take the `IfExists` suffix and the `ForAnyValue:`/`ForAllValues:`
//!   prefixes (context keys here have one value); an unknown operator is refused when the
//!   policy is set (`MalformedPolicy`), never silently ignored.

use std::net::IpAddr;

use serde_json::Value;

use s3s::{s3_error, S3Error, S3Result};

/// S3's largest bucket policy.
pub const POLICY_BYTES_MAX: usize = 20 * 1024;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Grants.
    Allow,
    /// Refuses, whatever else grants.
    Deny,
}

/// Whom a statement names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Principals {
    /// `"*"` or `{"AWS": "*"}`: everyone, anonymous callers too.
    Anyone,
    /// Users by canonical id, user name, or account ARN.
    Some(Vec<String>),
}

#[derive(Debug, Clone)]
struct Condition {
    op: String,
    if_exists: bool,
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
struct Statement {
    effect: Effect,
    principal: Option<Principals>,
    not_principal: Option<Principals>,
    action: Vec<String>,
    not_action: Vec<String>,
    resource: Vec<String>,
    not_resource: Vec<String>,
    conditions: Vec<Condition>,
}

/// A parsed policy.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

/// Who asks, as a policy sees them.
#[derive(Debug, Clone, Default)]
pub struct Principal<'a> {
    /// Canonical id (`None`: anonymous).
    pub canonical_id: Option<&'a str>,
    /// User name.
    pub name: Option<&'a str>,
}

/// The request's context keys (`aws:*`, `s3:*`), lowercase names.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Key → value.
    pub values: Vec<(String, String)>,
}

impl Context {
    fn get(&self, key: &str) -> Option<&str> {
        let key = key.to_ascii_lowercase();
        self.values.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }
}

/// What a policy says of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A `Deny` matched.
    Deny,
    /// An `Allow` matched and no `Deny`.
    Allow,
    /// Nothing matched.
    None,
}

fn malformed(why: impl std::fmt::Display) -> S3Error {
    s3_error!(MalformedPolicy, "{why}")
}

fn strings(v: &Value, what: &str) -> S3Result<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or_else(|| malformed(format!("{what} must be strings"))))
            .collect(),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        Value::Number(n) => Ok(vec![n.to_string()]),
        _ => Err(malformed(format!("{what} must be a string or a list of strings"))),
    }
}

fn principals(v: &Value) -> S3Result<Principals> {
    match v {
        Value::String(s) if s == "*" => Ok(Principals::Anyone),
        Value::Object(map) => {
            let mut ids = Vec::new();
            for (k, v) in map {
                if !matches!(k.as_str(), "AWS" | "CanonicalUser") {
                    return Err(malformed(format!("Invalid principal type `{k}`")));
                }
                for id in strings(v, "Principal")? {
                    if id == "*" {
                        return Ok(Principals::Anyone);
                    }
                    ids.push(id);
                }
            }
            Ok(Principals::Some(ids))
        }
        _ => Err(malformed("Invalid principal in policy")),
    }
}

/// True for the operators this evaluator knows (without `IfExists` and set prefixes).
fn known_operator(op: &str) -> bool {
    matches!(
        op,
        "StringEquals"
            | "StringNotEquals"
            | "StringEqualsIgnoreCase"
            | "StringNotEqualsIgnoreCase"
            | "StringLike"
            | "StringNotLike"
            | "NumericEquals"
            | "NumericNotEquals"
            | "NumericLessThan"
            | "NumericLessThanEquals"
            | "NumericGreaterThan"
            | "NumericGreaterThanEquals"
            | "DateEquals"
            | "DateNotEquals"
            | "DateLessThan"
            | "DateLessThanEquals"
            | "DateGreaterThan"
            | "DateGreaterThanEquals"
            | "Bool"
            | "IpAddress"
            | "NotIpAddress"
            | "Null"
            | "ArnEquals"
            | "ArnLike"
            | "ArnNotEquals"
            | "ArnNotLike"
    )
}

impl Policy {
    /// Parses and checks `text`, a policy of bucket `bucket`.
    ///
    /// # Errors
    /// `MalformedPolicy` naming what is wrong (S3's code for any invalid policy).
    pub fn parse(text: &str, bucket: &str) -> S3Result<Policy> {
        if text.len() > POLICY_BYTES_MAX {
            return Err(malformed("Policies must be at most 20 KiB"));
        }
        let doc: Value =
            serde_json::from_str(text).map_err(|e| malformed(format!("Policies must be valid JSON: {e}")))?;
        let Value::Object(doc) = doc else { return Err(malformed("A policy is a JSON object")) };
        for k in doc.keys() {
            if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
                return Err(malformed(format!("Unknown field {k}")));
            }
        }
        if let Some(v) = doc.get("Version") {
            if !matches!(v.as_str(), Some("2012-10-17" | "2008-10-17")) {
                return Err(malformed("The policy's Version must be 2012-10-17 or 2008-10-17"));
            }
        }
        let list = match doc.get("Statement") {
            Some(Value::Array(a)) => a.clone(),
            Some(s @ Value::Object(_)) => vec![s.clone()],
            _ => return Err(malformed("Missing required field Statement")),
        };
        if list.is_empty() {
            return Err(malformed("Could not parse the policy: Statement is empty!"));
        }
        let mut statements = Vec::with_capacity(list.len());
        for s in &list {
            let Value::Object(s) = s else { return Err(malformed("A Statement is a JSON object")) };
            for k in s.keys() {
                if !matches!(
                    k.as_str(),
                    "Sid"
                        | "Effect"
                        | "Principal"
                        | "NotPrincipal"
                        | "Action"
                        | "NotAction"
                        | "Resource"
                        | "NotResource"
                        | "Condition"
                ) {
                    return Err(malformed(format!("Unknown field {k}")));
                }
            }
            let effect = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                _ => return Err(malformed("Invalid effect: a Statement's Effect is Allow or Deny")),
            };
            let principal = s.get("Principal").map(principals).transpose()?;
            let not_principal = s.get("NotPrincipal").map(principals).transpose()?;
            if principal.is_none() == not_principal.is_none() {
                return Err(malformed("A bucket policy Statement needs exactly one of Principal and NotPrincipal"));
            }
            let action = s.get("Action").map(|v| strings(v, "Action")).transpose()?.unwrap_or_default();
            let not_action = s.get("NotAction").map(|v| strings(v, "NotAction")).transpose()?.unwrap_or_default();
            if action.is_empty() == not_action.is_empty() {
                return Err(malformed("A Statement needs exactly one of Action and NotAction"));
            }
            for a in action.iter().chain(&not_action) {
                let lower = a.to_ascii_lowercase();
                if !(lower == "*" || lower.starts_with("s3:")) {
                    return Err(malformed(format!("Policy has invalid action `{a}`")));
                }
            }
            let resource = s.get("Resource").map(|v| strings(v, "Resource")).transpose()?.unwrap_or_default();
            let not_resource = s.get("NotResource").map(|v| strings(v, "NotResource")).transpose()?.unwrap_or_default();
            if resource.is_empty() == not_resource.is_empty() {
                return Err(malformed("A Statement needs exactly one of Resource and NotResource"));
            }
            let own = format!("arn:aws:s3:::{bucket}");
            for r in resource.iter().chain(&not_resource) {
                let inside = r == &own || r.starts_with(&format!("{own}/")) || wildcard(r, &own, false);
                if !inside {
                    return Err(malformed(format!("Policy has invalid resource `{r}`: it must name this bucket")));
                }
            }
            let mut conditions = Vec::new();
            if let Some(c) = s.get("Condition") {
                let Value::Object(ops) = c else { return Err(malformed("A Condition is a JSON object")) };
                for (op, body) in ops {
                    let bare = op.split_once(':').map_or(op.as_str(), |(_, o)| o);
                    let (bare, if_exists) = match bare.strip_suffix("IfExists") {
                        Some(b) => (b, true),
                        None => (bare, false),
                    };
                    if !known_operator(bare) {
                        return Err(malformed(format!("Invalid Condition type : {op}")));
                    }
                    let Value::Object(keys) = body else { return Err(malformed("A condition maps keys to values")) };
                    for (key, values) in keys {
                        conditions.push(Condition {
                            op: bare.to_owned(),
                            if_exists,
                            key: key.to_ascii_lowercase(),
                            values: strings(values, "condition values")?,
                        });
                    }
                }
            }
            statements.push(Statement {
                effect,
                principal,
                not_principal,
                action,
                not_action,
                resource,
                not_resource,
                conditions,
            });
        }
        Ok(Policy { statements })
    }

    /// What the policy says of `principal` doing `action` on `resource` (an ARN).
    pub fn evaluate(&self, principal: &Principal<'_>, action: &str, resource: &str, ctx: &Context) -> Decision {
        let mut allowed = false;
        for s in &self.statements {
            if !s.matches(principal, action, resource, ctx) {
                continue;
            }
            match s.effect {
                Effect::Deny => return Decision::Deny,
                Effect::Allow => allowed = true,
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::None
        }
    }

    /// True when an `Allow` names everyone without a condition (S3's "public" policy).
    pub fn is_public(&self) -> bool {
        self.statements.iter().any(|s| {
            s.effect == Effect::Allow
                && (s.principal == Some(Principals::Anyone) || s.not_principal.is_some())
                && s.conditions.is_empty()
        })
    }
}

impl Statement {
    fn matches(&self, principal: &Principal<'_>, action: &str, resource: &str, ctx: &Context) -> bool {
        let who = match (&self.principal, &self.not_principal) {
            (Some(p), _) => principal_matches(p, principal),
            (None, Some(p)) => !principal_matches(p, principal),
            (None, None) => false,
        };
        let what = if self.action.is_empty() {
            !self.not_action.iter().any(|a| wildcard(a, action, true))
        } else {
            self.action.iter().any(|a| wildcard(a, action, true))
        };
        let on = if self.resource.is_empty() {
            !self.not_resource.iter().any(|r| wildcard(r, resource, false))
        } else {
            self.resource.iter().any(|r| wildcard(r, resource, false))
        };
        who && what && on && self.conditions.iter().all(|c| c.holds(ctx))
    }
}

fn principal_matches(p: &Principals, who: &Principal<'_>) -> bool {
    match p {
        Principals::Anyone => true,
        Principals::Some(ids) => ids.iter().any(|id| {
            let id = id.as_str();
            who.canonical_id == Some(id)
                || who.canonical_id.is_some_and(|c| id == format!("arn:aws:iam::{c}:root"))
                || who.name.is_some_and(|n| id.ends_with(&format!(":user/{n}")) || id == n)
        }),
    }
}

/// Matches `pattern` with `*` (any run) and `?` (any one character) against `s`.
pub fn wildcard(pattern: &str, s: &str, ignore_case: bool) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = if ignore_case {
        (pattern.to_lowercase().chars().collect(), s.to_lowercase().chars().collect())
    } else {
        (pattern.chars().collect(), s.chars().collect())
    };
    // Iterative matching with one backtrack point (the last `*`).
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == s.get(si) => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

fn ip_in(net: &str, ip: IpAddr) -> bool {
    let (addr, len) = match net.split_once('/') {
        Some((a, l)) => (a, l.parse::<u32>().ok()),
        None => (net, None),
    };
    let Ok(base) = addr.trim().parse::<IpAddr>() else { return false };
    match (base, ip) {
        (IpAddr::V4(b), IpAddr::V4(i)) => {
            let len = len.unwrap_or(32).min(32);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(b) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(b), IpAddr::V6(i)) => {
            let len = len.unwrap_or(128).min(128);
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            u128::from(b) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

fn date_ms(s: &str) -> Option<i128> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(i128::from(n) * 1000);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() / 1_000_000)
}

impl Condition {
    fn holds(&self, ctx: &Context) -> bool {
        let Some(actual) = ctx.get(&self.key) else {
            return match self.op.as_str() {
                "Null" => self.values.iter().any(|v| v == "true"),
                // A missing key fails every other operator, unless `IfExists`.
                _ => self.if_exists,
            };
        };
        let any = |f: &dyn Fn(&str) -> bool| self.values.iter().any(|v| f(v));
        let num = |v: &str| v.parse::<f64>().ok();
        let cmp_num = |f: &dyn Fn(f64, f64) -> bool| {
            num(actual).is_some_and(|a| self.values.iter().any(|v| num(v).is_some_and(|b| f(a, b))))
        };
        let cmp_date = |f: &dyn Fn(i128, i128) -> bool| {
            date_ms(actual).is_some_and(|a| self.values.iter().any(|v| date_ms(v).is_some_and(|b| f(a, b))))
        };
        match self.op.as_str() {
            "StringEquals" | "ArnEquals" => any(&|v| v == actual),
            "StringNotEquals" | "ArnNotEquals" => !any(&|v| v == actual),
            "StringEqualsIgnoreCase" => any(&|v| v.eq_ignore_ascii_case(actual)),
            "StringNotEqualsIgnoreCase" => !any(&|v| v.eq_ignore_ascii_case(actual)),
            "StringLike" | "ArnLike" => any(&|v| wildcard(v, actual, false)),
            "StringNotLike" | "ArnNotLike" => !any(&|v| wildcard(v, actual, false)),
            "NumericEquals" => cmp_num(&|a, b| (a - b).abs() < f64::EPSILON),
            "NumericNotEquals" => !cmp_num(&|a, b| (a - b).abs() < f64::EPSILON),
            "NumericLessThan" => cmp_num(&|a, b| a < b),
            "NumericLessThanEquals" => cmp_num(&|a, b| a <= b),
            "NumericGreaterThan" => cmp_num(&|a, b| a > b),
            "NumericGreaterThanEquals" => cmp_num(&|a, b| a >= b),
            "DateEquals" => cmp_date(&|a, b| a == b),
            "DateNotEquals" => !cmp_date(&|a, b| a == b),
            "DateLessThan" => cmp_date(&|a, b| a < b),
            "DateLessThanEquals" => cmp_date(&|a, b| a <= b),
            "DateGreaterThan" => cmp_date(&|a, b| a > b),
            "DateGreaterThanEquals" => cmp_date(&|a, b| a >= b),
            "Bool" => any(&|v| v.eq_ignore_ascii_case(actual)),
            "IpAddress" => actual.parse::<IpAddr>().is_ok_and(|ip| any(&|v| ip_in(v, ip))),
            "NotIpAddress" => actual.parse::<IpAddr>().is_ok_and(|ip| !any(&|v| ip_in(v, ip))),
            "Null" => any(&|v| v == "false"),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Policy {
        Policy::parse(text, "b").expect("policy")
    }

    const ALICE: Principal<'static> = Principal { canonical_id: Some("alice-id"), name: Some("alice") };
    const ANON: Principal<'static> = Principal { canonical_id: None, name: None };

    #[test]
    fn explicit_deny_wins_and_allow_grants() {
        let policy = p(r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"},
            {"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/secret/*"}]}"#);
        let ctx = Context::default();
        assert_eq!(policy.evaluate(&ANON, "s3:GetObject", "arn:aws:s3:::b/k", &ctx), Decision::Allow);
        assert_eq!(policy.evaluate(&ALICE, "s3:GetObject", "arn:aws:s3:::b/secret/x", &ctx), Decision::Deny);
        assert_eq!(policy.evaluate(&ANON, "s3:PutObject", "arn:aws:s3:::b/k", &ctx), Decision::None);
        assert!(policy.is_public());
    }

    #[test]
    fn principals_actions_and_resources_take_wildcards_and_negations() {
        let policy = p(
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":["alice-id"]},"NotAction":"s3:Delete*","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/?ey"]}}"#,
        );
        let ctx = Context::default();
        assert_eq!(policy.evaluate(&ALICE, "s3:ListBucket", "arn:aws:s3:::b", &ctx), Decision::Allow);
        assert_eq!(policy.evaluate(&ALICE, "s3:getobject", "arn:aws:s3:::b/key", &ctx), Decision::Allow);
        assert_eq!(policy.evaluate(&ALICE, "s3:DeleteObject", "arn:aws:s3:::b/key", &ctx), Decision::None);
        assert_eq!(policy.evaluate(&ANON, "s3:GetObject", "arn:aws:s3:::b/key", &ctx), Decision::None);
        assert_eq!(policy.evaluate(&ALICE, "s3:GetObject", "arn:aws:s3:::b/keys", &ctx), Decision::None);
        assert!(!policy.is_public());
    }

    #[test]
    fn conditions_check_the_request_context() {
        let policy = p(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:ListBucket","Resource":"arn:aws:s3:::b",
            "Condition":{"IpAddress":{"aws:SourceIp":"127.0.0.0/8"},"StringLike":{"s3:prefix":["public/*"]},"NumericLessThanEquals":{"s3:max-keys":"100"}}}]}"#,
        );
        let ctx = |ip: &str, prefix: &str| Context {
            values: vec![
                ("aws:sourceip".into(), ip.into()),
                ("s3:prefix".into(), prefix.into()),
                ("s3:max-keys".into(), "10".into()),
            ],
        };
        assert_eq!(
            policy.evaluate(&ANON, "s3:ListBucket", "arn:aws:s3:::b", &ctx("127.0.0.1", "public/a")),
            Decision::Allow
        );
        assert_eq!(
            policy.evaluate(&ANON, "s3:ListBucket", "arn:aws:s3:::b", &ctx("10.0.0.1", "public/a")),
            Decision::None
        );
        assert_eq!(
            policy.evaluate(&ANON, "s3:ListBucket", "arn:aws:s3:::b", &ctx("127.0.0.1", "private/")),
            Decision::None
        );
        assert_eq!(policy.evaluate(&ANON, "s3:ListBucket", "arn:aws:s3:::b", &Context::default()), Decision::None);
        assert!(!policy.is_public());
    }

    #[test]
    fn bad_policies_are_malformed() {
        for bad in [
            "not json",
            r#"{"Statement":[]}"#,
            r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"ec2:Run","Resource":"arn:aws:s3:::b"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::other/*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b","Condition":{"Sometimes":{"a":"b"}}}]}"#,
            r#"{"Version":"2099-01-01","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b"}]}"#,
        ] {
            let err = Policy::parse(bad, "b").expect_err(bad);
            assert_eq!(err.code().as_str(), "MalformedPolicy", "{bad}");
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("a*c", "abbbc", false));
        assert!(wildcard("a?c", "abc", false));
        assert!(!wildcard("a?c", "abbc", false));
        assert!(wildcard("*", "", false));
        assert!(wildcard("S3:Get*", "s3:getobject", true));
        assert!(!wildcard("arn:aws:s3:::b/x*", "arn:aws:s3:::b/y", false));
    }

    #[test]
    fn cidr_blocks() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(ip_in("10.1.0.0/16", ip("10.1.2.3")));
        assert!(!ip_in("10.1.0.0/16", ip("10.2.0.1")));
        assert!(ip_in("::1/128", ip("::1")));
        assert!(!ip_in("10.0.0.0/8", ip("::1")));
    }
}
