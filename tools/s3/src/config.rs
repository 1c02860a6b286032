//! The gateway's settings: a TOML file (`--config`), every key overridable by an environment
//! variable `CANDYBOX_S3_<KEY>` and by a flag `--<key-with-dashes>`.
//!
//! Invariants:
//! - Precedence is flag > environment > file > default, key by key.
//! - Unknown keys and bad values are refused before anything starts (exit status 2).
//! - Every key is declared once, in the `settings!` table; `deploy/candybox-s3.example.toml`
//!   lists each with its default (a test checks both directions).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

macro_rules! settings {
    ( $( $(#[doc = $doc:literal])* $name:ident, $env:literal : $ty:ty = $default:expr ; )* ) => {
        /// One layer of settings, every key optional: the TOML file, or flags and environment.
        #[derive(Debug, Default, Clone, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Layer {
            $( $(#[doc = $doc])* #[arg(long, env = $env)] pub $name: Option<$ty>, )*
        }

        /// The resolved settings.
        #[derive(Debug, Clone)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl Layer {
            /// Key by key: this layer's value where set, else `lower`'s.
            pub fn over(self, lower: Layer) -> Layer {
                Layer { $( $name: self.$name.or(lower.$name), )* }
            }

            /// Fills every unset key with its default.
            pub fn resolve(self) -> Config {
                Config { $( $name: self.$name.unwrap_or_else(|| $default), )* }
            }
        }

        /// Every key's name, as the file spells it.
        #[cfg(test)]
        pub const KEYS: &[&str] = &[ $( stringify!($name), )* ];
    };
}

settings! {
    /// The node's main port, HOST:PORT.
    node, "CANDYBOX_S3_NODE": String = "127.0.0.1:7420".to_owned();
    /// Where S3 clients connect.
    listen, "CANDYBOX_S3_LISTEN": SocketAddr = SocketAddr::from(([127, 0, 0, 1], 7480));
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    http_listen, "CANDYBOX_S3_HTTP_LISTEN": SocketAddr = SocketAddr::from(([127, 0, 0, 1], 7481));
    /// The users file (TOML; reloaded on SIGHUP). Required.
    users, "CANDYBOX_S3_USERS": PathBuf = PathBuf::new();
    /// The region this gateway serves (a bucket's location constraint must name it).
    region, "CANDYBOX_S3_REGION": String = "us-east-1".to_owned();
    /// How long a resolved bucket is trusted before its record is read again (ms).
    bucket_cache_ttl_ms, "CANDYBOX_S3_BUCKET_CACHE_TTL_MS": u64 = 2000;
    /// How long to wait for the node at start (s).
    node_wait_s, "CANDYBOX_S3_NODE_WAIT_S": u64 = 30;
    /// Largest request head (request line and headers) in bytes; larger ones are refused.
    header_bytes_max, "CANDYBOX_S3_HEADER_BYTES_MAX": usize = 64 * 1024;
    /// How long SIGTERM waits for requests in flight before closing them (s).
    shutdown_grace_s, "CANDYBOX_S3_SHUTDOWN_GRACE_S": u64 = 30;
    /// What a new bucket gets when its CreateBucket does not say: `aws` (AWS's defaults since
    /// April 2023: object ownership BucketOwnerEnforced, so ACLs are disabled, and every public
    /// access block on) or `open` (ObjectWriter, no public access block: S3 before 2023).
    new_bucket_defaults, "CANDYBOX_S3_NEW_BUCKET_DEFAULTS": String = "aws".to_owned();
    /// The length of a lifecycle "day" in seconds (S3's is 86400; tests shorten it).
    lifecycle_day_s, "CANDYBOX_S3_LIFECYCLE_DAY_S": u64 = 86_400;
    /// How often the lifecycle worker applies every bucket's rules, in seconds.
    lifecycle_interval_s, "CANDYBOX_S3_LIFECYCLE_INTERVAL_S": u64 = 60;
    /// Domains of virtual-hosted-style requests, comma-separated (`BUCKET.DOMAIN` names the
    /// bucket); empty: path-style only. Any other host is always path-style.
    domains, "CANDYBOX_S3_DOMAINS": String = String::new();
    /// The key file of SSE-S3 and SSE-KMS (TOML: `s3_key`, `kms_default_key`, `[keys]` of
    /// name = 32 bytes in base64); empty: those modes are refused (SSE-C needs no key file).
    sse_keys_file, "CANDYBOX_S3_SSE_KEYS_FILE": PathBuf = PathBuf::new();
    /// Log filter (tracing's `EnvFilter` syntax).
    log, "CANDYBOX_S3_LOG": String = "info".to_owned();
}

impl Config {
    /// `file` (if any) under `flags` (flags and environment), resolved and checked.
    ///
    /// # Errors
    /// The file cannot be read or parsed, or a value is invalid.
    pub fn load(flags: Layer, file: Option<&std::path::Path>) -> Result<Config, String> {
        let base = match file {
            None => Layer::default(),
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
                toml::from_str::<Layer>(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))?
            }
        };
        let config = flags.over(base).resolve();
        if config.users.as_os_str().is_empty() {
            return Err("no users file: give --users FILE (or `users` in the config file, or CANDYBOX_S3_USERS)".into());
        }
        if config.node.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
            return Err(format!("`node` must be HOST:PORT, not `{}`", config.node));
        }
        if !["aws", "open"].contains(&config.new_bucket_defaults.as_str()) {
            return Err(format!("`new_bucket_defaults` must be `aws` or `open`, not `{}`", config.new_bucket_defaults));
        }
        if config.lifecycle_day_s == 0 || config.lifecycle_interval_s == 0 {
            return Err("`lifecycle_day_s` and `lifecycle_interval_s` must be positive".into());
        }
        if config.header_bytes_max < 8192 {
            return Err(format!("`header_bytes_max` must be at least 8192, not {}", config.header_bytes_max));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_lists_every_key_with_its_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/candybox-s3.example.toml");
        let text = std::fs::read_to_string(path).expect("read the example config");
        let layer: Layer = toml::from_str(&text).expect("the example parses");
        for key in KEYS {
            assert!(text.contains(&format!("\n{key} = ")), "the example lacks `{key}`");
        }
        let file = layer.resolve();
        let defaults = Layer { users: Some(file.users.clone()), ..Layer::default() }.resolve();
        assert_eq!(format!("{file:?}"), format!("{defaults:?}"), "the example's values are the defaults");
    }

    #[test]
    fn flags_win_over_the_file_and_a_missing_users_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s3.toml");
        std::fs::write(&path, "region = \"eu-west-1\"\nusers = \"u.toml\"\n").expect("write");
        let flags = Layer { region: Some("us-west-2".into()), ..Layer::default() };
        let c = Config::load(flags, Some(&path)).expect("load");
        assert_eq!((c.region.as_str(), c.users.to_str()), ("us-west-2", Some("u.toml")));
        let err = Config::load(Layer::default(), None).expect_err("no users");
        assert!(err.contains("--users"), "{err}");
        std::fs::write(&path, "users = \"u\"\nbogus = 1\n").expect("write");
        assert!(Config::load(Layer::default(), Some(&path)).is_err());
    }
}
