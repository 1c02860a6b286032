//! How an S3 object's headers are kept in a Candy: the content type is the Candy's own; every
//! other header is one user-metadata entry.
//!
//! Entries (names are lowercase; values as S3 received them):
//! - `x-amz-meta-NAME`: S3 user metadata `NAME`;
//! - `cache-control`, `content-disposition`, `content-encoding`, `content-language`, `expires`;
//! - `etag`: the ETag without quotes (the MD5 of a single put, `HEX-N` of a multipart one),
//!   committed in the put's trailer once the bytes are known;
//! - `checksum-ALGO`: an S3 checksum (base64) the put computed;
//! - `owner`: the canonical id of the user who wrote it.
//!
//! A Candy written over the native protocol has none of these; it still answers as an S3
//! object: its ETag is its `digest-md5` when it has one, else a stable value made of its
//! CRC-32, size and write stamp.

use candybox_wire::client::{CandyMeta, Hlc};
use s3s::dto::{Checksum, Metadata};

use crate::body::Computed;

/// The prefix of S3 user metadata entries.
pub const USER_PREFIX: &str = "x-amz-meta-";
/// The entry holding the ETag.
pub const ETAG: &str = "etag";
/// The entry holding the writer's canonical id.
pub const OWNER: &str = "owner";
/// The entry holding the object's ACL (absent: private).
pub const ACL: &str = "acl";

/// The entries a finished upload adds in its trailer.
pub fn digest_entries(c: &Computed) -> Vec<(String, String)> {
    let mut out = vec![(ETAG.to_owned(), c.md5_hex.clone())];
    let mut sums = c.checksums.clone();
    for (name, value) in checksum_fields(&mut sums) {
        if let Some(v) = value.take() {
            out.push((format!("checksum-{name}"), v));
        }
    }
    out
}

/// The checksum fields by S3 algorithm name.
pub fn checksum_fields(c: &mut Checksum) -> [(&'static str, &mut Option<String>); 5] {
    [
        ("crc32", &mut c.checksum_crc32),
        ("crc32c", &mut c.checksum_crc32c),
        ("sha1", &mut c.checksum_sha1),
        ("sha256", &mut c.checksum_sha256),
        ("crc64nvme", &mut c.checksum_crc64nvme),
    ]
}

/// The headers S3 stores with an object besides its user metadata.
#[derive(Debug, Default, Clone)]
pub struct Stored {
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Expires`, as an HTTP date.
    pub expires: Option<String>,
}

/// The user-metadata entries of a put: its S3 user metadata, its stored headers and owner.
pub fn entries(
    user: Option<&Metadata>,
    stored: &Stored,
    owner: Option<&str>,
    acl: Option<&crate::acl::Acl>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(user) = user {
        let mut names: Vec<_> = user.iter().collect();
        names.sort();
        for (k, v) in names {
            out.push((format!("{USER_PREFIX}{}", k.to_ascii_lowercase()), v.clone()));
        }
    }
    for (name, value) in [
        ("cache-control", &stored.cache_control),
        ("content-disposition", &stored.content_disposition),
        ("content-encoding", &stored.content_encoding),
        ("content-language", &stored.content_language),
        ("expires", &stored.expires),
    ] {
        if let Some(v) = value {
            out.push((name.to_owned(), v.clone()));
        }
    }
    if let Some(o) = owner {
        out.push((OWNER.to_owned(), o.to_owned()));
    }
    if let Some(a) = acl.filter(|a| !a.grants.is_empty()) {
        out.push((ACL.to_owned(), a.encode()));
    }
    out
}

/// An object's S3 view of a Candy's metadata.
#[derive(Debug, Default, Clone)]
pub struct View {
    /// The ETag, without quotes.
    pub etag: String,
    /// S3 user metadata.
    pub user: Metadata,
    /// Stored headers.
    pub stored: Stored,
    /// The checksums stored with it.
    pub checksums: Checksum,
    /// The writer's canonical id.
    pub owner: Option<String>,
    /// The object's size as S3 shows it: the plaintext's when it is encrypted.
    pub size: u64,
    /// Its encryption, if any.
    pub sealed: Option<crate::sse::Sealed>,
    /// Its plaintext layout, when encrypted.
    pub layout: Option<crate::sse::Layout>,
}

/// Reads the S3 view out of user-metadata entries.
pub fn view(entries: &[(String, String)], checksum: u32, size: u64, hlc: Hlc) -> View {
    let mut v = View { size, ..View::default() };
    let mut digest_md5 = None;
    for (k, val) in entries {
        if let Some(name) = k.strip_prefix(USER_PREFIX) {
            v.user.insert(name.to_owned(), val.clone());
            continue;
        }
        match k.as_str() {
            ETAG => v.etag = val.clone(),
            ACL => {}
            OWNER => v.owner = Some(val.clone()),
            "digest-md5" => digest_md5 = Some(val.clone()),
            "cache-control" => v.stored.cache_control = Some(val.clone()),
            "content-disposition" => v.stored.content_disposition = Some(val.clone()),
            "content-encoding" => v.stored.content_encoding = Some(val.clone()),
            "content-language" => v.stored.content_language = Some(val.clone()),
            "expires" => v.stored.expires = Some(val.clone()),
            other => {
                if let Some(name) = other.strip_prefix("checksum-") {
                    for (n, slot) in checksum_fields(&mut v.checksums) {
                        if n == name {
                            *slot = Some(val.clone());
                        }
                    }
                }
            }
        }
    }
    v.sealed = crate::sse::Sealed::of_entries(entries);
    if v.sealed.is_some() {
        v.layout = crate::sse::Layout::of_entries(entries);
        v.size = v.layout.as_ref().map_or(0, crate::sse::Layout::size);
    }
    if v.etag.is_empty() {
        v.etag = match digest_md5 {
            Some(md5) => md5,
            None => format!(
                "{checksum:08x}{size:016x}{:012x}{:04x}",
                hlc.physical_ms & 0xffff_ffff_ffff,
                hlc.logical & 0xffff
            ),
        };
    }
    v
}

/// [`view`] of a head's or get's metadata.
pub fn view_of(m: &CandyMeta) -> View {
    view(&m.user_meta, m.checksum, m.size, m.hlc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_s_entries_read_back_as_its_view() {
        let mut user = Metadata::default();
        user.insert("Color".to_owned(), "blue".to_owned());
        let stored = Stored { cache_control: Some("no-cache".into()), ..Stored::default() };
        let mut e = entries(Some(&user), &stored, Some("c1"), None);
        let computed = Computed {
            md5_hex: "900150983cd24fb0d6963f7d28e17f72".into(),
            checksums: Checksum { checksum_crc32: Some("NSRBwg==".into()), ..Checksum::default() },
            length: 3,
        };
        e.extend(digest_entries(&computed));
        let v = view(&e, 0, 3, Hlc::ZERO);
        assert_eq!(v.etag, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(v.user.get("color").map(String::as_str), Some("blue"));
        assert_eq!(v.stored.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(v.checksums.checksum_crc32.as_deref(), Some("NSRBwg=="));
        assert_eq!(v.owner.as_deref(), Some("c1"));
    }

    #[test]
    fn a_native_candy_has_a_stable_etag() {
        let hlc = Hlc { physical_ms: 5, logical: 1, node: 1 };
        let a = view(&[], 7, 9, hlc).etag;
        assert_eq!(a, view(&[], 7, 9, hlc).etag);
        assert_ne!(a, view(&[], 8, 9, hlc).etag);
        let with_md5 = view(&[("digest-md5".into(), "abc".into())], 7, 9, hlc).etag;
        assert_eq!(with_md5, "abc");
    }
}
