//! Server-side encryption: SSE-C (the client's key), SSE-S3 and SSE-KMS (keys from the
//! gateway's key file, by name).
//!
//! Every encrypted object has a data key of its own (32 random bytes), used with AES-256-GCM and
//! kept in the object's metadata wrapped (AES-256-GCM again) by the key its mode names: the
//! customer's key, the key file's SSE-S3 key, or the named SSE-KMS key. The node holds only
//! ciphertext.
//!
//! Ciphertext layout: the plaintext of a put, or of each multipart part, is cut into chunks of
//! [`CHUNK`] bytes (the last one shorter); each chunk is stored as `nonce (12) ‖ ciphertext ‖ tag
//! (16)`, sealed with the chunk's index in its part as associated data. A range of plaintext so
//! maps to whole chunks of the stored bytes (see [`Layout`]), and a ranged get decrypts only the
//! chunks it covers.
//!
//! Invariants:
//! - A nonce is never reused under one data key: each stream (a put, or one upload of a part)
//!   draws a random 96-bit base and XORs the chunk index into its first 8 bytes.
//! - A wrong customer key, or a stored byte changed, is an error before any plaintext leaves:
//!   the key unwraps only under the right key, and every chunk's tag is checked before it is
//!   sent.
//! - The plaintext size (`sse-size`) and the parts' plaintext sizes (`sse-parts`) are in the
//!   object's metadata, committed with it.

use std::collections::BTreeMap;
use std::path::Path;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use md5::Digest as _;
use rand::RngCore as _;
use s3s::dto::ServerSideEncryption;
use s3s::{s3_error, S3Error, S3Result};

/// The SSE-C key of an S3 input's `x-amz-server-side-encryption-customer-*` headers
/// (`copy_source INPUT`: its `x-amz-copy-source-server-side-encryption-customer-*` ones), as
/// [`customer_of`] reads them.
macro_rules! customer_key {
    ($input:expr) => {
        $crate::sse::customer_of(
            $input.sse_customer_algorithm.as_deref(),
            $input.sse_customer_key.as_deref(),
            $input.sse_customer_key_md5.as_deref(),
        )
    };
    (copy_source $input:expr) => {
        $crate::sse::customer_of(
            $input.copy_source_sse_customer_algorithm.as_deref(),
            $input.copy_source_sse_customer_key.as_deref(),
            $input.copy_source_sse_customer_key_md5.as_deref(),
        )
    };
}
pub(crate) use customer_key;

/// The encryption a write's input asks for ([`request_of`] of its `x-amz-server-side-encryption*`
/// headers, the SSE-C key `customer` and the bucket's `default`).
macro_rules! requested {
    ($input:expr, $customer:expr, $default:expr) => {
        $crate::sse::request_of(
            $input.server_side_encryption.as_ref(),
            $input.ssekms_key_id.as_deref(),
            $input.ssekms_encryption_context.as_deref(),
            $input.bucket_key_enabled,
            $customer,
            $default,
        )
    };
}
pub(crate) use requested;

/// Sets an S3 output's encryption headers from an [`Echo`] (`context`: and its SSE-KMS
/// encryption context, for the outputs that have one).
macro_rules! set_echo {
    ($out:expr, $echo:expr) => {{
        let echo: $crate::sse::Echo = $echo;
        $out.server_side_encryption = echo.sse;
        $out.ssekms_key_id = echo.kms_key_id;
        $out.sse_customer_algorithm = echo.customer_algorithm;
        $out.sse_customer_key_md5 = echo.customer_md5;
        $out.bucket_key_enabled = echo.bucket_key;
        echo.context
    }};
    ($out:expr, $echo:expr, context) => {{
        $out.ssekms_encryption_context = $crate::sse::set_echo!($out, $echo);
    }};
}
pub(crate) use set_echo;

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
/// Stored bytes a chunk adds: its nonce and tag.
pub const OVERHEAD: usize = 12 + 16;

/// The metadata entry naming the mode: `AES256` (SSE-S3), `aws:kms` or `SSE-C`.
pub const MODE: &str = "sse";
const KEY_ID: &str = "sse-key-id";
const CUSTOMER_MD5: &str = "sse-c-key-md5";
const WRAPPED: &str = "sse-wrapped";
const CONTEXT: &str = "sse-context";
const BUCKET_KEY: &str = "sse-bucket-key";
/// The plaintext size of an encrypted object.
pub const SIZE: &str = "sse-size";
/// The plaintext sizes of an encrypted multipart object's parts (`SIZE*COUNT,...`).
pub const PARTS: &str = "sse-parts";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The gateway's keys for SSE-S3 and SSE-KMS, from its key file.
#[derive(Default)]
pub struct KeyRing {
    keys: BTreeMap<String, [u8; 32]>,
    s3_key: Option<String>,
    kms_default: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    s3_key: Option<String>,
    kms_default_key: Option<String>,
    #[serde(default)]
    keys: BTreeMap<String, String>,
}

impl KeyRing {
    /// Reads a key file: `s3_key` (the SSE-S3 key's name), `kms_default_key` (SSE-KMS without a
    /// key id) and `[keys]`, each name = 32 bytes in base64.
    ///
    /// # Errors
    /// An unreadable file, a key that is not 32 bytes, or a default naming no key.
    pub fn load(path: &Path) -> anyhow::Result<KeyRing> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the key file {}: {e}", path.display()))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                tracing::warn!(
                    file = %path.display(),
                    "the key file is readable by other users: `chmod 600` it (anyone who reads it can read every SSE-S3 and SSE-KMS object)"
                );
            }
        }
        let file: KeyFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("the key file {} is not valid: {e}", path.display()))?;
        let mut keys = BTreeMap::new();
        for (name, value) in file.keys {
            let bytes = B64
                .decode(value.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| anyhow::anyhow!("key {name:?} in {} is not 32 bytes of base64", path.display()))?;
            keys.insert(name, bytes);
        }
        for (what, name) in [("s3_key", &file.s3_key), ("kms_default_key", &file.kms_default_key)] {
            if let Some(n) = name.as_ref().filter(|n| !keys.contains_key(*n)) {
                anyhow::bail!("{what} = {n:?} in {} names no key of [keys]", path.display());
            }
        }
        Ok(KeyRing { keys, s3_key: file.s3_key, kms_default: file.kms_default_key })
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn key(&self, mode: Mode, id: Option<&str>) -> S3Result<(String, [u8; 32])> {
        let id = match (mode, id) {
            (_, Some(id)) => id.to_owned(),
            (Mode::S3, None) => self.s3_key.clone().ok_or_else(not_configured)?,
            (_, None) => self.kms_default.clone().or_else(|| self.s3_key.clone()).ok_or_else(not_configured)?,
        };
        match self.keys.get(&id) {
            Some(k) => Ok((id, *k)),
            None if self.keys.is_empty() => Err(not_configured()),
            None => Err(kms_not_found(&id)),
        }
    }
}

fn not_configured() -> S3Error {
    s3_error!(
        NotImplemented,
        "Server-side encryption with the gateway's keys (SSE-S3, SSE-KMS) is not configured: the gateway has no `sse_keys_file`"
    )
}

fn kms_not_found(id: &str) -> S3Error {
    let mut e = S3Error::with_message(
        s3s::S3ErrorCode::Custom("KMS.NotFoundException".into()),
        format!("Key '{id}' does not exist in the gateway's key file"),
    );
    e.set_status_code(http::StatusCode::BAD_REQUEST);
    e
}

/// How an object is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// SSE-S3 (`AES256`).
    S3,
    /// SSE-KMS (`aws:kms`).
    Kms,
    /// SSE-C.
    Customer,
}

impl Mode {
    fn text(self) -> &'static str {
        match self {
            Mode::S3 => "AES256",
            Mode::Kms => "aws:kms",
            Mode::Customer => "SSE-C",
        }
    }

    fn of_text(s: &str) -> Option<Mode> {
        match s {
            "AES256" => Some(Mode::S3),
            "aws:kms" => Some(Mode::Kms),
            "SSE-C" => Some(Mode::Customer),
            _ => None,
        }
    }
}

/// A customer's key from the SSE-C headers.
#[derive(Clone)]
pub struct Customer {
    key: [u8; 32],
    /// The key's MD5, base64 (as S3 echoes it).
    pub md5: String,
}

impl std::fmt::Debug for Customer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Customer").field("md5", &self.md5).finish_non_exhaustive()
    }
}

/// The customer key of SSE-C headers (`algorithm`, `key`, `key_md5`), `None` when there are none.
///
/// # Errors
/// `InvalidArgument` (400) for an incomplete set, a key that is not 256 bits, or an MD5 that is
/// not the key's; `InvalidEncryptionAlgorithmError` for an algorithm other than AES256.
pub fn customer_of(algorithm: Option<&str>, key: Option<&str>, key_md5: Option<&str>) -> S3Result<Option<Customer>> {
    if algorithm.is_none() && key.is_none() && key_md5.is_none() {
        return Ok(None);
    }
    let Some(algorithm) = algorithm else {
        return Err(s3_error!(InvalidArgument, "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm."));
    };
    if algorithm != "AES256" {
        let mut e = S3Error::with_message(
            s3s::S3ErrorCode::Custom("InvalidEncryptionAlgorithmError".into()),
            "The encryption request you specified is not valid. The valid value is AES256.",
        );
        e.set_status_code(http::StatusCode::BAD_REQUEST);
        return Err(e);
    }
    let Some(key) = key else {
        return Err(s3_error!(InvalidArgument, "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."));
    };
    let key: [u8; 32] = B64
        .decode(key.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "The secret key was invalid for the specified algorithm."))?;
    let Some(given_md5) = key_md5 else {
        return Err(s3_error!(InvalidArgument, "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key."));
    };
    let md5 = B64.encode(md5::Md5::digest(key));
    if given_md5.trim() != md5 {
        return Err(s3_error!(
            InvalidArgument,
            "The calculated MD5 hash of the key did not match the hash that was provided."
        ));
    }
    Ok(Some(Customer { key, md5 }))
}

/// A bucket's default encryption.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BucketDefault {
    /// `AES256` or `aws:kms`.
    pub algorithm: String,
    /// The SSE-KMS key id, if named.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// S3's bucket-key flag (echoed; every object has its own data key regardless).
    #[serde(default)]
    pub bucket_key: bool,
}

/// What a write asks for.
#[derive(Debug, Clone)]
pub struct Request {
    mode: Mode,
    key_id: Option<String>,
    customer: Option<Customer>,
    context: Option<String>,
    bucket_key: bool,
}

/// The encryption a write asks for: its SSE-C key, else its `x-amz-server-side-encryption*`
/// headers, else the bucket's default; `None`: not encrypted.
///
/// # Errors
/// `InvalidArgument` for SSE-C combined with another mode, an unknown algorithm, or a KMS key id
/// without `aws:kms`.
pub fn request_of(
    sse: Option<&ServerSideEncryption>,
    kms_key_id: Option<&str>,
    context: Option<&str>,
    bucket_key: Option<bool>,
    customer: Option<Customer>,
    default: Option<&BucketDefault>,
) -> S3Result<Option<Request>> {
    if let Some(c) = customer {
        if sse.is_some() || kms_key_id.is_some() {
            return Err(s3_error!(InvalidArgument, "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"));
        }
        return Ok(Some(Request {
            mode: Mode::Customer,
            key_id: None,
            customer: Some(c),
            context: None,
            bucket_key: false,
        }));
    }
    let (algorithm, key_id, bucket_key) = match (sse, default) {
        (Some(s), _) => (s.as_str().to_owned(), kms_key_id.map(str::to_owned), bucket_key.unwrap_or(false)),
        (None, _) if kms_key_id.is_some() => {
            return Err(s3_error!(InvalidArgument, "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"));
        }
        (None, Some(d)) => (d.algorithm.clone(), d.kms_key_id.clone(), bucket_key.unwrap_or(d.bucket_key)),
        (None, None) => return Ok(None),
    };
    let mode = match algorithm.as_str() {
        "AES256" => Mode::S3,
        "aws:kms" => Mode::Kms,
        other => {
            return Err(s3_error!(InvalidArgument, "The encryption method specified is not supported: {other}"));
        }
    };
    if mode == Mode::S3 && key_id.is_some() && sse.is_some() {
        return Err(s3_error!(InvalidArgument, "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"));
    }
    let key_id = if mode == Mode::S3 { None } else { key_id };
    Ok(Some(Request { mode, key_id, customer: None, context: context.map(str::to_owned), bucket_key }))
}

/// A data key.
#[derive(Clone)]
pub struct DataKey([u8; 32]);

impl DataKey {
    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
    }

    /// The ETag S3 shows for an SSE-C or SSE-KMS object (not the plaintext's MD5, which would
    /// let anyone who can list confirm a guess of the content): MD5(md5 ‖ data key).
    pub fn etag(&self, md5_hex: &str) -> String {
        let mut h = md5::Md5::new();
        h.update(md5_hex.as_bytes());
        h.update(self.0);
        hex::encode(h.finalize())
    }
}

/// The ETag S3 shows for bytes whose MD5 is `md5_hex`, sealed as `sealing` says.
pub fn shown_etag(sealing: Option<&(Sealed, DataKey)>, md5_hex: String) -> String {
    match sealing {
        Some((s, k)) if !s.md5_etag() => k.etag(&md5_hex),
        _ => md5_hex,
    }
}

/// An object's encryption as stored in its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The mode.
    pub mode: Mode,
    /// The SSE-S3 or SSE-KMS key's name.
    pub key_id: Option<String>,
    /// SSE-C: the customer key's MD5 (base64).
    pub customer_md5: Option<String>,
    wrapped: Vec<u8>,
    /// The SSE-KMS encryption context, as given.
    pub context: Option<String>,
    /// S3's bucket-key flag.
    pub bucket_key: bool,
}

fn wrap_aad(mode: Mode, key_id: Option<&str>) -> Vec<u8> {
    let mut aad = b"candybox-s3 sse v1 ".to_vec();
    aad.extend_from_slice(mode.text().as_bytes());
    aad.push(b' ');
    aad.extend_from_slice(key_id.unwrap_or("").as_bytes());
    aad
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

/// Seals a new data key for `req`.
///
/// # Errors
/// SSE-S3/SSE-KMS without a key file or with a key id it does not hold.
pub fn seal(ring: &KeyRing, req: &Request) -> S3Result<(Sealed, DataKey)> {
    let key = DataKey(random());
    Ok((wrap(ring, req, &key)?, key))
}

/// `key` wrapped as `req` asks (a copy between encryptions keeps the bytes and rewraps).
///
/// # Errors
/// As [`seal`].
pub fn wrap(ring: &KeyRing, req: &Request, key: &DataKey) -> S3Result<Sealed> {
    let (kek, key_id) = match (&req.customer, req.mode) {
        (Some(c), _) => (c.key, None),
        (None, mode) => {
            let (id, k) = ring.key(mode, req.key_id.as_deref())?;
            (k, Some(id))
        }
    };
    let nonce: [u8; 12] = random();
    let mut body = key.0.to_vec();
    let tag = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&kek))
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &wrap_aad(req.mode, key_id.as_deref()), &mut body)
        .map_err(|_| s3_error!(InternalError, "sealing a data key failed"))?;
    let mut wrapped = nonce.to_vec();
    wrapped.extend_from_slice(&body);
    wrapped.extend_from_slice(&tag);
    Ok(Sealed {
        mode: req.mode,
        key_id,
        customer_md5: req.customer.as_ref().map(|c| c.md5.clone()),
        wrapped,
        context: req.context.clone(),
        bucket_key: req.bucket_key,
    })
}

/// The error S3 gives a read of an SSE-C object without its key.
fn needs_key() -> S3Error {
    s3_error!(InvalidRequest, "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.")
}

impl Sealed {
    /// The encryption recorded in an object's metadata entries, if any.
    pub fn of_entries(entries: &[(String, String)]) -> Option<Sealed> {
        let get = |name: &str| entries.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let mode = Mode::of_text(get(MODE)?)?;
        Some(Sealed {
            mode,
            key_id: get(KEY_ID).map(str::to_owned),
            customer_md5: get(CUSTOMER_MD5).map(str::to_owned),
            wrapped: B64.decode(get(WRAPPED)?).ok()?,
            context: get(CONTEXT).map(str::to_owned),
            bucket_key: get(BUCKET_KEY) == Some("true"),
        })
    }

    /// Its metadata entries (besides the sizes, which come with the bytes).
    pub fn entries(&self) -> Vec<(String, String)> {
        let mut out =
            vec![(MODE.to_owned(), self.mode.text().to_owned()), (WRAPPED.to_owned(), B64.encode(&self.wrapped))];
        for (name, value) in [(KEY_ID, &self.key_id), (CUSTOMER_MD5, &self.customer_md5), (CONTEXT, &self.context)] {
            if let Some(v) = value {
                out.push((name.to_owned(), v.clone()));
            }
        }
        if self.bucket_key {
            out.push((BUCKET_KEY.to_owned(), "true".to_owned()));
        }
        out
    }

    /// Whether `name` is one of the entries encryption keeps.
    pub fn is_entry(name: &str) -> bool {
        name == MODE || name.starts_with("sse-")
    }

    /// The data key, unwrapped with the key the mode names: `customer` for SSE-C.
    ///
    /// # Errors
    /// SSE-C: `InvalidRequest` (400) without a customer key, `AccessDenied` (403) with a wrong one;
    /// SSE-C headers on an object of another mode: `InvalidRequest`; a key the ring lacks.
    pub fn open(&self, ring: &KeyRing, customer: Option<&Customer>) -> S3Result<DataKey> {
        let kek = match (self.mode, customer) {
            (Mode::Customer, None) => return Err(needs_key()),
            (Mode::Customer, Some(c)) => {
                if self.customer_md5.as_deref() != Some(c.md5.as_str()) {
                    return Err(s3_error!(AccessDenied, "Access Denied: the customer key is not the object's"));
                }
                c.key
            }
            (_, Some(_)) => {
                return Err(s3_error!(InvalidRequest, "The encryption parameters are not applicable to this object."));
            }
            (mode, None) => ring.key(mode, self.key_id.as_deref())?.1,
        };
        if self.wrapped.len() != 12 + 32 + 16 {
            return Err(s3_error!(InternalError, "the object's wrapped data key is damaged"));
        }
        let (nonce, rest) = self.wrapped.split_at(12);
        let (body, tag) = rest.split_at(32);
        let mut key = [0u8; 32];
        key.copy_from_slice(body);
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&kek))
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &wrap_aad(self.mode, self.key_id.as_deref()),
                &mut key,
                Tag::from_slice(tag),
            )
            .map_err(|_| match self.mode {
                Mode::Customer => s3_error!(AccessDenied, "Access Denied: the customer key is not the object's"),
                _ => s3_error!(InternalError, "the object's data key does not open under key {:?}", self.key_id),
            })?;
        Ok(DataKey(key))
    }

    /// Whether S3 shows this object's ETag as a plain MD5 (SSE-S3 does; SSE-C and SSE-KMS do not).
    pub fn md5_etag(&self) -> bool {
        self.mode == Mode::S3
    }

    /// The response headers' values: `x-amz-server-side-encryption`, the KMS key id, the SSE-C
    /// algorithm and key MD5, the bucket-key flag.
    pub fn echo(&self) -> Echo {
        Echo {
            sse: (self.mode != Mode::Customer).then(|| ServerSideEncryption::from(self.mode.text().to_owned())),
            kms_key_id: (self.mode == Mode::Kms).then(|| self.key_id.clone()).flatten(),
            customer_algorithm: (self.mode == Mode::Customer).then(|| "AES256".to_owned()),
            customer_md5: self.customer_md5.clone(),
            bucket_key: self.bucket_key.then_some(true),
            context: self.context.clone(),
        }
    }
}

/// What S3 echoes of an object's encryption.
#[derive(Debug, Default, Clone)]
pub struct Echo {
    /// `x-amz-server-side-encryption`.
    pub sse: Option<ServerSideEncryption>,
    /// `x-amz-server-side-encryption-aws-kms-key-id`.
    pub kms_key_id: Option<String>,
    /// `x-amz-server-side-encryption-customer-algorithm`.
    pub customer_algorithm: Option<String>,
    /// `x-amz-server-side-encryption-customer-key-MD5`.
    pub customer_md5: Option<String>,
    /// `x-amz-server-side-encryption-bucket-key-enabled`.
    pub bucket_key: Option<bool>,
    /// `x-amz-server-side-encryption-context`.
    pub context: Option<String>,
}

/// Stored bytes of `plain` bytes of one part.
pub fn stored_len(plain: u64) -> u64 {
    let chunks = plain.div_ceil(CHUNK as u64);
    plain + chunks * OVERHEAD as u64
}

/// `sse-parts`: part sizes, run-length encoded (`SIZE*COUNT` or `SIZE`, comma separated).
pub fn encode_parts(sizes: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sizes.len() {
        let run = sizes[i..].iter().take_while(|&&s| s == sizes[i]).count();
        out.push(if run == 1 { sizes[i].to_string() } else { format!("{}*{run}", sizes[i]) });
        i += run;
    }
    out.join(",")
}

/// Reads `sse-parts`.
pub fn decode_parts(s: &str) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for item in s.split(',').filter(|i| !i.is_empty()) {
        let (size, count) = match item.split_once('*') {
            Some((a, b)) => (a.parse::<u64>().ok()?, b.parse::<usize>().ok()?),
            None => (item.parse::<u64>().ok()?, 1),
        };
        if count > 10_000 || out.len() + count > 10_000 {
            return None;
        }
        out.extend(std::iter::repeat_n(size, count));
    }
    Some(out)
}

/// The plaintext parts of an encrypted object: its `sse-parts`, or one part of `sse-size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Plaintext sizes of the parts, in order.
    pub parts: Vec<u64>,
}

/// Where a plaintext range lies in the stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// First and last stored byte to get (inclusive).
    pub stored_first: u64,
    /// See `stored_first`.
    pub stored_last: u64,
    part: usize,
    chunk: u64,
    skip: usize,
    len: u64,
}

impl Layout {
    /// The layout in an object's metadata entries (`None`: not encrypted, or damaged).
    pub fn of_entries(entries: &[(String, String)]) -> Option<Layout> {
        let get = |name: &str| entries.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        if let Some(p) = get(PARTS) {
            return decode_parts(p).map(|parts| Layout { parts });
        }
        get(SIZE).and_then(|s| s.parse().ok()).map(|size| Layout { parts: vec![size] })
    }

    /// The plaintext size.
    pub fn size(&self) -> u64 {
        self.parts.iter().sum()
    }

    /// The stored span of plaintext bytes `first..first + len` (`len` > 0, within the size).
    pub fn span(&self, first: u64, len: u64) -> Span {
        let locate = |at: u64| {
            let (mut plain, mut stored) = (0u64, 0u64);
            for (i, &p) in self.parts.iter().enumerate() {
                if at < plain + p {
                    let within = at - plain;
                    let chunk = within / CHUNK as u64;
                    return (i, chunk, within % CHUNK as u64, stored + chunk * (CHUNK + OVERHEAD) as u64);
                }
                plain += p;
                stored += stored_len(p);
            }
            (self.parts.len(), 0, 0, stored)
        };
        let (part, chunk, skip, stored_first) = locate(first);
        let (lpart, lchunk, _, lstart) = locate(first + len - 1);
        let last_plain = self.parts.get(lpart).map_or(0, |&p| (p - lchunk * CHUNK as u64).min(CHUNK as u64));
        let stored_last = lstart + last_plain + OVERHEAD as u64 - 1;
        Span { stored_first, stored_last, part, chunk, skip: usize::try_from(skip).unwrap_or(0), len }
    }
}

/// Encrypts a stream of plaintext pieces into stored chunks.
pub struct Sealer {
    cipher: Aes256Gcm,
    base: [u8; 12],
    index: u64,
    pending: BytesMut,
}

impl Sealer {
    /// A sealer for one stream (a put, or one upload of a part) under `key`.
    pub fn new(key: &DataKey) -> Sealer {
        Sealer { cipher: key.cipher(), base: random(), index: 0, pending: BytesMut::new() }
    }

    fn seal_into(&mut self, out: &mut BytesMut, plain: &[u8]) -> std::io::Result<()> {
        let mut nonce = self.base;
        for (b, i) in nonce[..8].iter_mut().zip(self.index.to_le_bytes()) {
            *b ^= i;
        }
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &self.index.to_le_bytes(), &mut out[start..])
            .map_err(|_| std::io::Error::other("encrypting a chunk failed"))?;
        out.extend_from_slice(&tag);
        self.index += 1;
        Ok(())
    }

    /// The stored bytes `piece` completes (possibly none: a partial chunk waits for more).
    ///
    /// # Errors
    /// When the cipher refuses (it does not for chunks of this size).
    pub fn push(&mut self, piece: &[u8]) -> std::io::Result<Bytes> {
        let mut piece = piece;
        let sealed_now = (self.pending.len() + piece.len()) / CHUNK;
        let mut out = BytesMut::with_capacity(sealed_now * (CHUNK + OVERHEAD));
        if !self.pending.is_empty() {
            let take = (CHUNK - self.pending.len()).min(piece.len());
            self.pending.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if self.pending.len() == CHUNK {
                let full = std::mem::take(&mut self.pending);
                self.seal_into(&mut out, &full)?;
            }
        }
        while piece.len() >= CHUNK {
            self.seal_into(&mut out, &piece[..CHUNK])?;
            piece = &piece[CHUNK..];
        }
        self.pending.extend_from_slice(piece);
        Ok(out.freeze())
    }

    /// The last, partial chunk (empty when the plaintext ended on a chunk boundary).
    ///
    /// # Errors
    /// As [`Sealer::push`].
    pub fn finish(&mut self) -> std::io::Result<Bytes> {
        let mut out = BytesMut::new();
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            self.seal_into(&mut out, &last)?;
        }
        Ok(out.freeze())
    }
}

/// Decrypts the stored bytes of a [`Span`] back into its plaintext.
pub struct Opener {
    cipher: Aes256Gcm,
    parts: Vec<u64>,
    part: usize,
    chunk: u64,
    skip: usize,
    left: u64,
    buf: BytesMut,
}

impl Opener {
    /// An opener of `span` of `layout`.
    pub fn new(key: &DataKey, layout: &Layout, span: &Span) -> Opener {
        Opener {
            cipher: key.cipher(),
            parts: layout.parts.clone(),
            part: span.part,
            chunk: span.chunk,
            skip: span.skip,
            left: span.len,
            buf: BytesMut::new(),
        }
    }

    fn chunk_plain(&self) -> usize {
        let p = self.parts.get(self.part).copied().unwrap_or(0);
        usize::try_from(p.saturating_sub(self.chunk * CHUNK as u64).min(CHUNK as u64)).unwrap_or(CHUNK)
    }

    /// Takes stored bytes; appends the plaintext they complete to `out`.
    ///
    /// # Errors
    /// A chunk whose tag does not match (changed bytes, or the wrong key).
    pub fn push(&mut self, mut piece: Bytes, out: &mut Vec<Bytes>) -> std::io::Result<()> {
        while !piece.is_empty() && self.left > 0 {
            let plain = self.chunk_plain();
            if plain == 0 {
                return Err(std::io::Error::other("the stored object is longer than its encryption layout"));
            }
            let whole = plain + OVERHEAD;
            let take = (whole - self.buf.len()).min(piece.len());
            self.buf.extend_from_slice(&piece.split_to(take));
            if self.buf.len() < whole {
                break;
            }
            let mut chunk = std::mem::replace(&mut self.buf, BytesMut::with_capacity(CHUNK + OVERHEAD));
            let (nonce, rest) = chunk.split_at_mut(12);
            let (body, tag) = rest.split_at_mut(plain);
            self.cipher
                .decrypt_in_place_detached(
                    Nonce::from_slice(nonce),
                    &self.chunk.to_le_bytes(),
                    body,
                    Tag::from_slice(tag),
                )
                .map_err(|_| {
                    std::io::Error::other("a stored chunk of an encrypted object failed its integrity check")
                })?;
            let from = 12 + self.skip;
            let n = (plain - self.skip).min(usize::try_from(self.left).unwrap_or(usize::MAX));
            let plaintext = chunk.freeze().slice(from..from + n);
            self.left -= n as u64;
            self.skip = 0;
            out.push(plaintext);
            self.chunk += 1;
            while self.part < self.parts.len() && self.chunk * CHUNK as u64 >= self.parts[self.part] {
                self.part += 1;
                self.chunk = 0;
            }
        }
        Ok(())
    }

    /// Whether every plaintext byte of the span was given out.
    pub fn done(&self) -> bool {
        self.left == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        DataKey([7; 32])
    }

    fn seal_all(key: &DataKey, data: &[u8], piece: usize) -> Vec<u8> {
        let mut s = Sealer::new(key);
        let mut out = Vec::new();
        for p in data.chunks(piece.max(1)) {
            out.extend_from_slice(&s.push(p).expect("seal"));
        }
        out.extend_from_slice(&s.finish().expect("finish"));
        out
    }

    fn open_range(key: &DataKey, layout: &Layout, stored: &[u8], first: u64, len: u64, piece: usize) -> Vec<u8> {
        let span = layout.span(first, len);
        let bytes = Bytes::copy_from_slice(&stored[span.stored_first as usize..=span.stored_last as usize]);
        let mut o = Opener::new(key, layout, &span);
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + piece).min(bytes.len());
            let mut got = Vec::new();
            o.push(bytes.slice(at..end), &mut got).expect("open");
            for g in got {
                out.extend_from_slice(&g);
            }
            at = end;
        }
        assert!(o.done());
        out
    }

    #[test]
    fn every_range_of_a_multipart_layout_decrypts_to_its_plaintext() {
        let k = key();
        let sizes = [CHUNK as u64 * 2 + 5, CHUNK as u64, 3, CHUNK as u64 + 1];
        let mut plain = Vec::new();
        let mut stored = Vec::new();
        for (i, &s) in sizes.iter().enumerate() {
            let part: Vec<u8> = (0..s).map(|b| (b as u8).wrapping_mul(31).wrapping_add(i as u8)).collect();
            let sealed = seal_all(&k, &part, 10_000 + i * 7);
            assert_eq!(sealed.len() as u64, stored_len(s));
            stored.extend(sealed);
            plain.extend(part);
        }
        let layout = Layout { parts: sizes.to_vec() };
        assert_eq!(layout.size(), plain.len() as u64);
        let n = plain.len() as u64;
        for (first, len) in
            [(0, n), (1, 1), (CHUNK as u64 - 1, 2), (n - 1, 1), (2 * CHUNK as u64 + 4, 2), (100, n - 200)]
        {
            let got = open_range(&k, &layout, &stored, first, len, 777);
            assert_eq!(got, plain[first as usize..(first + len) as usize], "range {first}+{len}");
        }
    }

    #[test]
    fn a_changed_byte_or_another_key_fails_the_chunk() {
        let data = vec![1u8; 1000];
        let mut stored = seal_all(&key(), &data, 100);
        let layout = Layout { parts: vec![1000] };
        let span = layout.span(0, 1000);
        let mut out = Vec::new();
        assert!(Opener::new(&DataKey([8; 32]), &layout, &span).push(Bytes::from(stored.clone()), &mut out).is_err());
        stored[40] ^= 1;
        assert!(Opener::new(&key(), &layout, &span).push(Bytes::from(stored), &mut out).is_err());
        assert!(out.is_empty(), "nothing leaves before its tag is checked");
    }

    #[test]
    fn data_keys_open_only_under_their_customer_key() {
        let c =
            customer_of(Some("AES256"), Some(&B64.encode([3u8; 32])), Some(&B64.encode(md5::Md5::digest([3u8; 32]))))
                .expect("valid")
                .expect("some");
        let req = request_of(None, None, None, None, Some(c.clone()), None).expect("ok").expect("some");
        let ring = KeyRing::default();
        let (sealed, dk) = seal(&ring, &req).expect("seal");
        let back = Sealed::of_entries(&sealed.entries()).expect("entries read back");
        assert_eq!(back.open(&ring, Some(&c)).expect("opens").0, dk.0);
        assert!(back.open(&ring, None).is_err());
        let other =
            customer_of(Some("AES256"), Some(&B64.encode([4u8; 32])), Some(&B64.encode(md5::Md5::digest([4u8; 32]))))
                .expect("valid")
                .expect("some");
        assert_eq!(
            back.open(&ring, Some(&other)).err().map(|e| e.code().as_str().to_owned()).as_deref(),
            Some("AccessDenied")
        );
        // Bad headers.
        assert!(customer_of(Some("AES256"), Some("AAAA"), Some("x")).is_err());
        assert!(customer_of(None, Some(&B64.encode([3u8; 32])), None).is_err());
        assert!(customer_of(Some("AES256"), Some(&B64.encode([3u8; 32])), Some(&B64.encode([0u8; 16]))).is_err());
    }

    #[test]
    fn part_sizes_round_trip_run_length_encoded() {
        let sizes = vec![5, 5, 5, 7, 5];
        assert_eq!(encode_parts(&sizes), "5*3,7,5");
        assert_eq!(decode_parts(&encode_parts(&sizes)), Some(sizes));
        assert_eq!(decode_parts("1*10001"), None);
    }
}
