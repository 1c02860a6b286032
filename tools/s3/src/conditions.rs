//! S3's conditional headers, evaluated in RFC 9110's order (as S3 documents them):
//!
//! 1. `If-Match` fails → 412; absent, a failing `If-Unmodified-Since` → 412;
//! 2. `If-None-Match` matches → 304 on reads (412 on writes); absent, `If-Modified-Since` not
//!    met → 304.
//!
//! Times compare at the second, as HTTP dates carry them.

use s3s::dto::{ETagCondition, Timestamp};
use s3s::{s3_error, S3Error};

use crate::ids::unix_ms;

/// The conditional headers of a get, head or copy source.
#[derive(Debug, Default, Clone)]
pub struct ReadConditions {
    /// `If-Match`.
    pub if_match: Option<ETagCondition>,
    /// `If-None-Match`.
    pub if_none_match: Option<ETagCondition>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<Timestamp>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<Timestamp>,
}

fn matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

impl ReadConditions {
    /// Whether an object of `etag` last modified at `modified_ms` may be read.
    ///
    /// # Errors
    /// `PreconditionFailed` (412) or, for `copy_source == false`, `NotModified` (304); a copy
    /// source answers 412 for both, as S3 does.
    pub fn check(&self, etag: &str, modified_ms: u64, copy_source: bool) -> Result<(), S3Error> {
        let modified_s = modified_ms / 1000;
        let failed = || s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold");
        let not_modified = || if copy_source { failed() } else { s3_error!(NotModified) };
        match &self.if_match {
            Some(c) if !matches(c, etag) => return Err(failed()),
            Some(_) => {}
            None => {
                if let Some(t) = &self.if_unmodified_since {
                    if modified_s > unix_ms(t) / 1000 {
                        return Err(failed());
                    }
                }
            }
        }
        match &self.if_none_match {
            Some(c) if matches(c, etag) => return Err(not_modified()),
            Some(_) => {}
            None => {
                if let Some(t) = &self.if_modified_since {
                    if modified_s <= unix_ms(t) / 1000 {
                        return Err(not_modified());
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::timestamp;
    use s3s::dto::ETag;
    use s3s::S3ErrorCode;

    fn code(r: Result<(), S3Error>) -> Option<S3ErrorCode> {
        r.err().map(|e| e.code().clone())
    }

    #[test]
    fn the_headers_combine_as_rfc_9110_orders_them() {
        let tag = |s: &str| Some(ETagCondition::ETag(ETag::Strong(s.to_owned())));
        let at = 1_700_000_000_000;
        let c = ReadConditions { if_match: tag("a"), ..Default::default() };
        assert_eq!(code(c.check("a", at, false)), None);
        assert_eq!(code(c.check("b", at, false)), Some(S3ErrorCode::PreconditionFailed));
        // If-Match holds, so If-Unmodified-Since is not looked at.
        let c = ReadConditions {
            if_match: tag("a"),
            if_unmodified_since: Some(timestamp(at - 10_000)),
            ..Default::default()
        };
        assert_eq!(code(c.check("a", at, false)), None);
        let c = ReadConditions { if_unmodified_since: Some(timestamp(at - 10_000)), ..Default::default() };
        assert_eq!(code(c.check("a", at, false)), Some(S3ErrorCode::PreconditionFailed));
        let c = ReadConditions { if_none_match: tag("a"), ..Default::default() };
        assert_eq!(code(c.check("a", at, false)), Some(S3ErrorCode::NotModified));
        assert_eq!(code(c.check("a", at, true)), Some(S3ErrorCode::PreconditionFailed));
        let c = ReadConditions { if_modified_since: Some(timestamp(at + 500)), ..Default::default() };
        assert_eq!(code(c.check("a", at, false)), Some(S3ErrorCode::NotModified), "same second");
        let c = ReadConditions { if_modified_since: Some(timestamp(at - 1000)), ..Default::default() };
        assert_eq!(code(c.check("a", at, false)), None);
        // If-None-Match fails (another tag), so If-Modified-Since is not looked at.
        let c = ReadConditions {
            if_none_match: tag("b"),
            if_modified_since: Some(timestamp(at + 5000)),
            ..Default::default()
        };
        assert_eq!(code(c.check("a", at, false)), None);
    }
}
