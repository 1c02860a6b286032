//! Test doubles and fixtures shared by every test: the simulated storage with fault injection,
//! the coordination contract suite, and one constructor per component.

pub mod coord_contract;
pub mod sim;

use std::{path::Path, rc::Rc};

use crate::{
    engine::{Engine, EngineConfig, RecoveryReport},
    error::Result,
    runtime::ManualClock,
    storage::Storage,
    types::BoxUid,
};

/// A small-sized engine configuration under `root`: partition `partition` of Box uid 1, Syrups in
/// `root/syrups`. Sizes are small so tests reach flushes, rolls and compactions quickly.
pub fn small_config(root: &Path, partition: u16) -> EngineConfig {
    let mut c =
        EngineConfig::new(root.join(format!("partitions/test/{partition}")), root.join("syrups"), BoxUid(1), partition);
    c.chunk_bytes = 512;
    c.syrup_roll_bytes = 64 * 1024;
    c.inline_bytes_max = 64;
    c.memtable_bytes = 16 * 1024;
    c.l0_compaction_trigger = 3;
    c.l0_stall = 8;
    c.level_base_bytes = 32 * 1024;
    c.level_multiplier = 4;
    c.table_target_bytes = 8 * 1024;
    c.table_block_bytes = 1024;
    c.gc_grace_ms = 1000;
    c.tombstone_grace_ms = 1000;
    c.upload_ttl_ms = 60_000;
    c.multipart_part_bytes_min = 1024;
    c.manifest_checkpoint_bytes = 8 * 1024;
    c.syrup_compact_bytes_min = 16 * 1024;
    c.reclaim_scan_interval_ms = 0;
    c
}

/// Opens an engine with a manual clock.
///
/// # Errors
/// Whatever open reports.
pub async fn open_engine<S: Storage>(
    storage: S,
    clock: Rc<ManualClock>,
    config: EngineConfig,
) -> Result<(Engine<S>, RecoveryReport)> {
    Engine::open(storage, clock, config).await
}

/// The files a format v1 node left in a partition directory (before the shard commit log): a
/// manifest with no flushed log position (log number 2), `CURRENT`, and `WAL-000002` holding two
/// records: `a` = "one", then `b` = "two" and `a` = "three". As (file name, bytes); the WAL last.
pub fn v1_partition_files() -> Vec<(String, Vec<u8>)> {
    use crate::{
        codec::crc32,
        hlc::Hlc,
        locator::{CandyBody, CandyLocator, Kind},
        manifest::{self, Change},
        record,
        wal::{self, WalOp},
    };
    let inline = |bytes: &[u8], logical: u32| {
        CandyLocator {
            hlc: Hlc { physical_ms: 1_699_999_999_000, logical, node: 1 },
            kind: Kind::Put,
            version_id: None,
            content_type: "text/plain".into(),
            user_meta: Vec::new(),
            created_ms: 1_699_999_999_000,
            size: bytes.len() as u64,
            checksum: crc32(&[bytes]),
            body: CandyBody::Inline(bytes.to_vec()),
        }
        .encode()
    };
    let mut m = manifest::encode_header(1);
    let edit = manifest::encode_edit(&[Change::LogNumber(2), Change::NextFileNumber(3)]);
    record::encode_record(m.len() as u64, &edit, &mut m);
    let mut w = wal::encode_header(2);
    let first = wal::encode_body(&[WalOp::Set { key: b"a".to_vec(), locator: inline(b"one", 0) }]);
    record::encode_record(w.len() as u64, &first, &mut w);
    let second = wal::encode_body(&[
        WalOp::Set { key: b"b".to_vec(), locator: inline(b"two", 1) },
        WalOp::Set { key: b"a".to_vec(), locator: inline(b"three", 2) },
    ]);
    record::encode_record(w.len() as u64, &second, &mut w);
    vec![
        (manifest::file_name(1), m),
        (manifest::CURRENT_FILE.to_string(), manifest::encode_current(1)),
        (wal::file_name(2), w),
    ]
}

/// A copy of `good` with one to three random bytes overwritten and up to `cut` bytes cut off its
/// end: the input of the "mutated bytes never panic" decoder tests.
pub fn mutate(rng: &mut impl rand::Rng, good: &[u8], cut: usize) -> Vec<u8> {
    let mut b = good.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        let at = rng.gen_range(0..b.len().max(1));
        if let Some(x) = b.get_mut(at) {
            *x = rng.gen();
        }
    }
    let keep = rng.gen_range(b.len().saturating_sub(cut)..b.len() + 1);
    b.truncate(keep);
    b
}
