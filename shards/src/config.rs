//! The node's configuration: a TOML file, every key overridable by an environment variable
//! `CANDYBOX_<KEY>` and by a flag `--<key-with-dashes>`.
//!
//! Invariants:
//! - Precedence is flag > environment > file > default, key by key.
//! - Unknown keys (in the file) and bad values (anywhere) are refused before anything starts:
//!   [`Config::load`] returns a one-line [`ConfigError`], and `main` exits with status 2.
//! - Every key is declared once, in the [`settings!`] table below; `deploy/candyboxd.example.toml`
//!   lists each with its default (a test checks both directions).

use std::{net::SocketAddr, path::PathBuf};

use candybox_core::{engine::EngineConfig, limits, types::BoxUid};
use serde::Deserialize;

/// A one-line configuration error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Declares every key once: the optional layer (file, env, flags) and the resolved config.
///
/// `required` keys have a default expression; `optional` keys resolve to `Option<T>` (their
/// default is derived from other keys at start-up).
macro_rules! settings {
    (
        required { $( $(#[doc = $doc:literal])* $name:ident, $env:literal : $ty:ty = $default:expr ; )* }
        optional { $( $(#[doc = $odoc:literal])* $oname:ident, $oenv:literal : $oty:ty ; )* }
    ) => {
        /// One layer of settings: every key optional. Read from the TOML file, or from flags and
        /// environment variables (clap).
        #[derive(Debug, Default, Clone, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Layer {
            $( $(#[doc = $doc])* #[arg(long, env = $env)] pub $name: Option<$ty>, )*
            $( $(#[doc = $odoc])* #[arg(long, env = $oenv)] pub $oname: Option<$oty>, )*
        }

        /// The resolved configuration.
        #[derive(Debug, Clone)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $name: $ty, )*
            $( $(#[doc = $odoc])* pub $oname: Option<$oty>, )*
        }

        impl Layer {
            /// Key by key: this layer's value where set, else `lower`'s.
            pub fn over(self, lower: Layer) -> Layer {
                Layer {
                    $( $name: self.$name.or(lower.$name), )*
                    $( $oname: self.$oname.or(lower.$oname), )*
                }
            }

            /// Fills every unset key with its default.
            pub fn resolve(self) -> Config {
                Config {
                    $( $name: self.$name.unwrap_or_else(|| $default), )*
                    $( $oname: self.$oname, )*
                }
            }
        }

        /// Each key with a default, as its flag's id, and the default as the help text shows it.
        fn defaults_shown() -> Vec<(&'static str, String)> {
            let d = Layer::default().resolve();
            vec![ $( (stringify!($name), ShowDefault::show(&d.$name)), )* ]
        }

        /// Every key, as written in the TOML file.
        #[cfg(test)]
        pub const KEYS: &[&str] = &[ $( stringify!($name), )* $( stringify!($oname), )* ];
    };
}

fn engine_defaults() -> EngineConfig {
    EngineConfig::new("", "", BoxUid(0), 0)
}

settings! {
    required {
        /// Directory of Syrups, partitions and the embedded coordination store; created if missing.
        data_dir, "CANDYBOX_DATA_DIR": PathBuf = PathBuf::from("candybox-data");
        /// The main port: every shard accepts here (SO_REUSEPORT). Port 0 picks a free port.
        listen, "CANDYBOX_LISTEN": SocketAddr = SocketAddr::from(([127, 0, 0, 1], 7420));
        /// HTTP address of /healthz, /readyz and /metrics. Port 0 picks a free port.
        http, "CANDYBOX_HTTP": SocketAddr = SocketAddr::from(([127, 0, 0, 1], 7419));
        /// The node id: high bits of Syrup ids, HLC tie-breaker. Unique in a cluster, stable.
        node_id, "CANDYBOX_NODE_ID": u16 = 1;
        /// Coordination store: "embedded" (file-backed, in <data_dir>/coord; one node),
        /// "zookeeper" (a ZooKeeper ensemble: zookeeper_connect; several nodes) or "memory" (not
        /// durable: for tests and experiments only).
        coordination, "CANDYBOX_COORDINATION": String = "embedded".to_string();
        /// ZooKeeper ensemble (coordination = "zookeeper"): host:port[,host:port...].
        zookeeper_connect, "CANDYBOX_ZOOKEEPER_CONNECT": String = "127.0.0.1:2181".to_string();
        /// ZooKeeper path below which the node keeps its entries (created when missing).
        zookeeper_chroot, "CANDYBOX_ZOOKEEPER_CHROOT": String = "/candybox".to_string();
        /// ZooKeeper session timeout asked of the ensemble (it clamps it to 2-20 x its tickTime);
        /// mutations stop while the session is suspended or lost.
        zookeeper_session_timeout_ms, "CANDYBOX_ZOOKEEPER_SESSION_TIMEOUT_MS": u64 = 6_000;
        /// Partitions of a new Box when create-box does not say.
        default_partitions, "CANDYBOX_DEFAULT_PARTITIONS": u16 = limits::PARTITION_COUNT_DEFAULT;
        /// Cap on one frame's body plus payload, in bytes.
        frame_body_bytes_max, "CANDYBOX_FRAME_BODY_BYTES_MAX": u32 = candybox_wire::FRAME_BODY_BYTES_MAX_DEFAULT;
        /// Open client connections of the whole node; more are closed at accept.
        connections_max, "CANDYBOX_CONNECTIONS_MAX": u32 = 4096;
        /// Requests in flight per connection; the node stops reading a connection at this count.
        requests_in_flight_max, "CANDYBOX_REQUESTS_IN_FLIGHT_MAX": u32 = 64;
        /// Bytes of request frames (bodies and put data) the whole node holds in memory at once;
        /// a frame that would go over waits before any byte of it is read. At least the frame cap.
        frame_memory_bytes_max, "CANDYBOX_FRAME_MEMORY_BYTES_MAX": u64 = 1024 * 1024 * 1024;
        /// A connection with no request in flight that sends nothing for this long is closed.
        idle_timeout_ms, "CANDYBOX_IDLE_TIMEOUT_MS": u64 = 300_000;
        /// Once a frame's header has arrived, its body must arrive within this long, or the
        /// connection is closed (a client that stalls mid-frame holds memory and a slot).
        frame_timeout_ms, "CANDYBOX_FRAME_TIMEOUT_MS": u64 = 60_000;
        /// Depth of each shard's cross-shard queue; a full queue answers Busy.
        shard_queue_max, "CANDYBOX_SHARD_QUEUE_MAX": u32 = 1024;
        /// Spin-before-park: after a request arrives, a shard keeps polling its ring this long
        /// (µs) before it parks in the kernel, while spinning pays (adaptive); 0 turns it off.
        /// Spinning is also off when the shards outnumber the cores the node may run on.
        spin_before_park_us, "CANDYBOX_SPIN_BEFORE_PARK_US": u64 = 100;
        /// Send the payload of large gets from the Syrup files to the socket with splice(2): the
        /// kernel hands the socket page-cache pages instead of copying them (chunks are verified
        /// just before they are spliced). Off sends them with writev from the mapping, whose
        /// in-kernel copy ran at a quarter of its speed in some runs (bench/README.md).
        splice_gets, "CANDYBOX_SPLICE_GETS": bool = true;
        /// Pin each shard's thread to its own core.
        pin_cores, "CANDYBOX_PIN_CORES": bool = true;
        /// Chunk payload bytes of new writes.
        chunk_bytes, "CANDYBOX_CHUNK_BYTES": u32 = engine_defaults().chunk_bytes;
        /// A Syrup is rolled once this many bytes are reserved in it.
        syrup_roll_bytes, "CANDYBOX_SYRUP_ROLL_BYTES": u64 = engine_defaults().syrup_roll_bytes;
        /// Candies up to this size are stored in their locator.
        inline_bytes_max, "CANDYBOX_INLINE_BYTES_MAX": usize = engine_defaults().inline_bytes_max;
        /// A memtable is frozen and flushed past this size.
        memtable_bytes, "CANDYBOX_MEMTABLE_BYTES": usize = engine_defaults().memtable_bytes;
        /// L0 tables that trigger a compaction into L1.
        l0_compaction_trigger, "CANDYBOX_L0_COMPACTION_TRIGGER": usize = engine_defaults().l0_compaction_trigger;
        /// L0 tables at which writes get Busy.
        l0_stall, "CANDYBOX_L0_STALL": usize = engine_defaults().l0_stall;
        /// Byte budget of L1.
        level_base_bytes, "CANDYBOX_LEVEL_BASE_BYTES": u64 = engine_defaults().level_base_bytes;
        /// Each level below L1 holds this many times the level above.
        level_multiplier, "CANDYBOX_LEVEL_MULTIPLIER": u64 = engine_defaults().level_multiplier;
        /// Compaction cuts output tables at about this size.
        table_target_bytes, "CANDYBOX_TABLE_TARGET_BYTES": usize = engine_defaults().table_target_bytes;
        /// SSTable data block size.
        table_block_bytes, "CANDYBOX_TABLE_BLOCK_BYTES": usize = engine_defaults().table_block_bytes;
        /// Bloom filter bits per key.
        bloom_bits_per_key, "CANDYBOX_BLOOM_BITS_PER_KEY": u32 = engine_defaults().bloom_bits_per_key;
        /// Obsolete files and unreferenced Syrups are deleted after this long.
        gc_grace_ms, "CANDYBOX_GC_GRACE_MS": u64 = engine_defaults().gc_grace_ms;
        /// Tombstones are dropped at the bottom level only when older than this.
        tombstone_grace_ms, "CANDYBOX_TOMBSTONE_GRACE_MS": u64 = engine_defaults().tombstone_grace_ms;
        /// Multipart uploads older than this are expired.
        upload_ttl_ms, "CANDYBOX_UPLOAD_TTL_MS": u64 = engine_defaults().upload_ttl_ms;
        /// Smallest multipart part other than the last.
        multipart_part_bytes_min, "CANDYBOX_MULTIPART_PART_BYTES_MIN": u64 = engine_defaults().multipart_part_bytes_min;
        /// The manifest is checkpointed past this size.
        manifest_checkpoint_bytes, "CANDYBOX_MANIFEST_CHECKPOINT_BYTES": u64 = engine_defaults().manifest_checkpoint_bytes;
        /// A Syrup whose live bytes fall under this fraction of its size is compacted (its live
        /// Parts moved, then it is deleted): space amplification stays under 1 / this.
        syrup_live_ratio_min, "CANDYBOX_SYRUP_LIVE_RATIO_MIN": f64 = engine_defaults().syrup_live_ratio_min;
        /// The active Syrup is compacted like the others once it is at least this large (and as
        /// dead), or at any size once wholly dead.
        syrup_compact_bytes_min, "CANDYBOX_SYRUP_COMPACT_BYTES_MIN": u64 = engine_defaults().syrup_compact_bytes_min;
        /// A changed partition's live Candies are scanned for reclamation at most this often.
        reclaim_scan_interval_ms, "CANDYBOX_RECLAIM_SCAN_INTERVAL_MS": u64 = engine_defaults().reclaim_scan_interval_ms;
        /// Bytes moved out of dead Syrups per partition and maintenance pass, at most.
        relocate_bytes_per_pass, "CANDYBOX_RELOCATE_BYTES_PER_PASS": u64 = engine_defaults().relocate_bytes_per_pass;
        /// Each shard's commit log starts a new segment past this many bytes.
        log_segment_bytes, "CANDYBOX_LOG_SEGMENT_BYTES": u64 = engine_defaults().log_segment_bytes;
        /// When a shard's commit log holds more than this many bytes, the partitions holding its
        /// oldest segment are flushed, so that segment can be deleted: the log stays bounded, and
        /// so does the replay after a crash.
        log_bytes_max, "CANDYBOX_LOG_BYTES_MAX": u64 = engine_defaults().log_bytes_max;
        /// Write each shard's next log segment full of zeros in the background before it is
        /// needed: a record then overwrites written blocks and its fdatasync commits no file size
        /// change (about half the fdatasync latency on ext4). Costs one extra write of each
        /// segment's size, paced (1 MiB at a time, spread over the current segment's filling):
        /// durable puts 1.18x, open-loop put p50 -25 % and p99 no worse (bench/README.md).
        log_prepare_segments, "CANDYBOX_LOG_PREPARE_SEGMENTS": bool = true;
        /// Below this many free bytes on the data directory's file system the node is full: puts
        /// and uploads get NoSpace, reads, deletes and GC go on in the reserve this keeps.
        disk_free_min_bytes, "CANDYBOX_DISK_FREE_MIN_BYTES": u64 = 256 * 1024 * 1024;
        /// Size of the ballast file (<data_dir>/BALLAST), a second reserve released when the disk
        /// is nearly full (and at a start on a full disk). 0: none.
        disk_ballast_bytes, "CANDYBOX_DISK_BALLAST_BYTES": u64 = 64 * 1024 * 1024;
        /// A copy reads and checks the source's bytes first (refusing damage instead of
        /// multiplying it) when the Candy is at most this large; larger ones copy without reading.
        copy_verify_bytes_max, "CANDYBOX_COPY_VERIFY_BYTES_MAX": u64 = engine_defaults().copy_verify_bytes_max;
        /// A rename intent whose marker is still absent after this long is dropped (source stays);
        /// an orphaned marker this old is reaped.
        rename_intent_abandon_ms, "CANDYBOX_RENAME_INTENT_ABANDON_MS": u64 = 60_000;
        /// Pause between two maintenance passes of a shard.
        maintenance_interval_ms, "CANDYBOX_MAINTENANCE_INTERVAL_MS": u64 = 1_000;
        /// A maintenance pass yields to client requests after this much work in one go.
        maintenance_budget_ms, "CANDYBOX_MAINTENANCE_BUDGET_MS": u64 = 5;
        /// Log filter (tracing env-filter syntax); logs go to stderr.
        log, "CANDYBOX_LOG": String = "info".to_string();
    }
    optional {
        /// First shard port: shard s listens on port_base + s. Default: the main port + 1 (0 when
        /// the main port is 0). 0: every shard picks a free port.
        port_base, "CANDYBOX_PORT_BASE": u16;
        /// Shard count. Default: the cores this process may use.
        shards, "CANDYBOX_SHARDS": u16;
        /// host:port that other nodes name when they redirect a client here (not-owner replies).
        /// Default: the listen address with its bound port (127.0.0.1 when it listens on all).
        advertise, "CANDYBOX_ADVERTISE": String;
    }
}

/// How a default value reads in `--help`.
trait ShowDefault {
    fn show(&self) -> String;
}

macro_rules! show_with_display {
    ($($t:ty),*) => { $( impl ShowDefault for $t { fn show(&self) -> String { self.to_string() } } )* };
}
show_with_display!(u16, u32, u64, usize, bool, f64, String, SocketAddr);

impl ShowDefault for PathBuf {
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl Cli {
    /// Parses the command line, with every flag's help ending in its default (the defaults are
    /// computed, so clap cannot show them by itself: a flag that is left out must stay unset, so
    /// that the file and the environment below it still apply).
    pub fn parse_with_defaults() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let mut command = Cli::command();
        for (id, default) in defaults_shown() {
            command = command.mut_arg(id, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: {default}]"))
            });
        }
        let matches = command.get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// Command line: `--config FILE` plus one flag per key.
#[derive(Debug, clap::Parser)]
#[command(name = "candyboxd", version, about = "The Candybox storage node")]
pub struct Cli {
    /// TOML configuration file (every key optional).
    #[arg(long, env = "CANDYBOX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Flags and environment variables.
    #[command(flatten)]
    pub layer: Layer,
}

impl Config {
    /// Resolves the command line (flags and environment) over the file over the defaults, and
    /// checks every value.
    ///
    /// # Errors
    /// A one-line [`ConfigError`] for an unreadable file, an unknown key or a bad value.
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("read config file {}: {e}", path.display())))?;
                parse_file(&text).map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))?
            }
            None => Layer::default(),
        };
        let config = cli.layer.over(file).resolve();
        config.validate()?;
        Ok(config)
    }

    /// Checks values against the limits.
    ///
    /// # Errors
    /// A one-line [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| Err(ConfigError(format!("invalid {key}: {why}")));
        if !matches!(self.coordination.as_str(), "embedded" | "memory" | "zookeeper") {
            return bad(
                "coordination",
                format!("{:?} is not \"embedded\", \"zookeeper\" or \"memory\"", self.coordination),
            );
        }
        if self.zookeeper_session_timeout_ms == 0 {
            return bad("zookeeper_session_timeout_ms", "must be positive".into());
        }
        if !self.zookeeper_chroot.is_empty() && !self.zookeeper_chroot.starts_with('/') {
            return bad("zookeeper_chroot", format!("{:?} is not an absolute path", self.zookeeper_chroot));
        }
        if self.node_id == 0 {
            return bad("node_id", "must be positive (0 marks an unplaced Box)".into());
        }
        if !(4096..=1 << 30).contains(&self.log_segment_bytes) {
            // A segment header says where the previous segment's records end in 32 bits.
            return bad("log_segment_bytes", format!("{} is not within 4 KiB..=1 GiB", self.log_segment_bytes));
        }
        if self.default_partitions == 0 || self.default_partitions > limits::PARTITION_COUNT_MAX {
            return bad("default_partitions", format!("must lie in 1..={}", limits::PARTITION_COUNT_MAX));
        }
        if self.frame_body_bytes_max < candybox_wire::frame::FRAME_BODY_BYTES_MAX_MIN {
            return bad(
                "frame_body_bytes_max",
                format!("must be at least {}", candybox_wire::frame::FRAME_BODY_BYTES_MAX_MIN),
            );
        }
        if self.frame_memory_bytes_max < u64::from(self.frame_body_bytes_max) {
            return bad(
                "frame_memory_bytes_max",
                format!("must be at least frame_body_bytes_max ({})", self.frame_body_bytes_max),
            );
        }
        if self.idle_timeout_ms == 0 || self.frame_timeout_ms == 0 {
            return bad("idle_timeout_ms / frame_timeout_ms", "must be positive".into());
        }
        if self.shards == Some(0) || self.shards.is_some_and(|s| s > crate::limits::SHARDS_MAX) {
            return bad("shards", format!("must lie in 1..={}", crate::limits::SHARDS_MAX));
        }
        for (key, v) in [
            ("connections_max", self.connections_max),
            ("requests_in_flight_max", self.requests_in_flight_max),
            ("shard_queue_max", self.shard_queue_max),
        ] {
            if v == 0 {
                return bad(key, "must be positive".into());
            }
        }
        if self.maintenance_interval_ms == 0 || self.maintenance_budget_ms == 0 {
            return bad("maintenance_interval_ms/maintenance_budget_ms", "must be positive".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return bad("log", e.to_string());
        }
        self.engine_config("x", BoxUid(1), 0).validate().map_err(|e| ConfigError(e.to_string()))?;
        Ok(())
    }

    /// The shard count: configured, or the cores this process may use.
    pub fn shard_count(&self) -> u16 {
        self.shards.unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            u16::try_from(n).unwrap_or(u16::MAX).clamp(1, crate::limits::SHARDS_MAX)
        })
    }

    /// The first shard port (see the key's doc).
    pub fn port_base_resolved(&self, main_port: u16) -> u16 {
        self.port_base.unwrap_or(if self.listen.port() == 0 { 0 } else { main_port.saturating_add(1) })
    }

    /// The Syrup directory, shared by every partition.
    pub fn syrup_dir(&self) -> PathBuf {
        self.data_dir.join("syrups")
    }

    /// The root of the shard commit logs (`shard-NNN` below it, one per shard).
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("log")
    }

    /// The settings of each shard's commit log.
    pub fn log_config(&self) -> candybox_core::log::LogConfig {
        candybox_core::log::LogConfig {
            segment_bytes: self.log_segment_bytes,
            bytes_max: self.log_bytes_max,
            prepare: self.log_prepare_segments,
            // The node sets the free-space reading (its disk watcher's); a preparation then
            // leaves at least twice the full-disk threshold free.
            free_bytes: None,
            prepare_reserve_bytes: self.disk_free_min_bytes.saturating_mul(2),
        }
    }

    /// The directory of one partition of one Box incarnation.
    pub fn partition_dir(&self, box_name: &str, box_uid: BoxUid, partition: u16) -> PathBuf {
        self.box_dir(box_name, box_uid).join(format!("p{partition:02}"))
    }

    /// The directory of one Box incarnation.
    pub fn box_dir(&self, box_name: &str, box_uid: BoxUid) -> PathBuf {
        self.data_dir.join("boxes").join(format!("{box_name}-{:016x}", box_uid.0))
    }

    /// The engine settings of one partition.
    pub fn engine_config(&self, box_name: &str, box_uid: BoxUid, partition: u16) -> EngineConfig {
        let mut c =
            EngineConfig::new(self.partition_dir(box_name, box_uid, partition), self.syrup_dir(), box_uid, partition);
        c.node_id = self.node_id;
        c.chunk_bytes = self.chunk_bytes;
        c.syrup_roll_bytes = self.syrup_roll_bytes;
        c.inline_bytes_max = self.inline_bytes_max;
        c.memtable_bytes = self.memtable_bytes;
        c.l0_compaction_trigger = self.l0_compaction_trigger;
        c.l0_stall = self.l0_stall;
        c.level_base_bytes = self.level_base_bytes;
        c.level_multiplier = self.level_multiplier;
        c.table_target_bytes = self.table_target_bytes;
        c.table_block_bytes = self.table_block_bytes;
        c.bloom_bits_per_key = self.bloom_bits_per_key;
        c.gc_grace_ms = self.gc_grace_ms;
        c.tombstone_grace_ms = self.tombstone_grace_ms;
        c.upload_ttl_ms = self.upload_ttl_ms;
        c.multipart_part_bytes_min = self.multipart_part_bytes_min;
        c.manifest_checkpoint_bytes = self.manifest_checkpoint_bytes;
        c.syrup_live_ratio_min = self.syrup_live_ratio_min;
        c.syrup_compact_bytes_min = self.syrup_compact_bytes_min;
        c.reclaim_scan_interval_ms = self.reclaim_scan_interval_ms;
        c.relocate_bytes_per_pass = self.relocate_bytes_per_pass;
        c.copy_verify_bytes_max = self.copy_verify_bytes_max;
        c.log_segment_bytes = self.log_segment_bytes;
        c.log_bytes_max = self.log_bytes_max;
        c.auto_maintenance = true;
        c.seed = rand::random();
        c
    }
}

/// Parses a TOML configuration file.
///
/// # Errors
/// A one-line [`ConfigError`] for bad TOML, an unknown key or a value of the wrong type.
pub fn parse_file(text: &str) -> Result<Layer, ConfigError> {
    toml::from_str::<Layer>(text).map_err(|e| ConfigError(e.message().replace('\n', " ")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn help_shows_every_default_and_an_omitted_flag_stays_unset() {
        let shown = defaults_shown();
        assert_eq!(shown.len(), KEYS.len() - 3, "every key but the three derived ones has a default");
        assert!(shown.contains(&("chunk_bytes", engine_defaults().chunk_bytes.to_string())));
        assert!(shown.contains(&("listen", "127.0.0.1:7420".to_string())));
        // The help text is only text: a flag left out must stay unset, so the file still applies.
        let file = parse_file("chunk_bytes = 8192").unwrap();
        let cli = <Cli as clap::Parser>::try_parse_from(["candyboxd"]).unwrap();
        assert_eq!(cli.layer.over(file).resolve().chunk_bytes, 8192);
    }

    const EXAMPLE: &str = include_str!("../../deploy/candyboxd.example.toml");

    #[test]
    fn example_file_parses_and_lists_every_key() {
        let layer = parse_file(EXAMPLE).unwrap();
        let config = layer.resolve();
        config.validate().unwrap();
        for key in KEYS {
            assert!(EXAMPLE.lines().any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} ="))), "{key}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(parse_file("no_such_key = 1").is_err());
        assert!(parse_file("listen = 7").is_err());
        let bad = parse_file("coordination = \"zk9\"").unwrap().resolve();
        assert!(bad.validate().is_err());
        let bad = parse_file("l0_stall = 1").unwrap().resolve();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = parse_file("node_id = 3\nshards = 2").unwrap();
        let flags = Layer { node_id: Some(9), ..Layer::default() };
        let c = flags.over(file).resolve();
        assert_eq!((c.node_id, c.shards), (9, Some(2)));
    }
}
