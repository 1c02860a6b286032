//! Model test of the shard commit logs on the simulated storage: the partitions of several Boxes
//! on shards that share one log each, as the node runs them, against a plain model.
//!
//! Each step runs a group of puts and deletes over random partitions at once (so records carry
//! several partitions' sections), sometimes with a forced flush of a partition (which may delete
//! log segments) or a clean restart, and crashes while they are in flight: unsynced data dropped
//! or the last write torn, between a batch's log write and its apply, during a flush, during a
//! segment deletion. A Box is sometimes deleted and created again under the same name (a new
//! incarnation) just before a crash. Every start reads every shard directory, with a shard count
//! and a placement that change from start to start (partitions move between shards), replays and
//! flushes, and deletes the segments of earlier starts.
//!
//! Some puts, copies and renames carry a condition on the key they write (absent, or the
//! current content digest, which every put attaches): the model predicts whether it holds, and
//! a refused one must have written nothing.
//!
//! After every start:
//! - every acknowledged put or delete is visible;
//! - an unacknowledged one is all-or-nothing, and once seen it stays;
//! - nothing of a deleted Box incarnation shows in the new one.
//!
//! `CANDYBOX_MODEL_TRACE=1` prints every step's mutations and how they ended (to follow a
//! failing seed).
//!
//! Fixed seeds run in CI. More by hand (the campaign of the commit log issue):
//! `CANDYBOX_MODEL_SEEDS=0..200 CANDYBOX_MODEL_OPS=5000 cargo test -p candybox-core --release --test model_shared_log -- --nocapture`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    rc::Rc,
};

use candybox_core::{
    engine::{CopyOptions, Engine, EngineConfig, PutOptions, SliceBody, WriteCondition},
    error::Error,
    log::{
        recover::{log_dirs, recover},
        CommitLog, LogConfig,
    },
    runtime::{block_on, spawn, yield_now, ManualClock},
    storage::Storage,
    testing::{
        sim::{CrashMode, SimStorage},
        small_config,
    },
    types::BoxUid,
};
use rand::{rngs::SmallRng, Rng, SeedableRng};

type E = Engine<SimStorage>;

const ROOT: &str = "/n";
const PARTITIONS: u16 = 4;
const BOXES: usize = 2;
const KEYS_PER_PARTITION: u32 = 12;

/// One Box: its name and current incarnation.
#[derive(Debug, Clone, Copy)]
struct BoxState {
    name: usize,
    uid: BoxUid,
}

/// What a key may read as: one value once known, several while an unacknowledged mutation may or
/// may not have landed (`None`: absent).
type Allowed = Vec<Option<Vec<u8>>>;

/// A partition: its Box incarnation and index.
type At = (BoxUid, u16);

/// An unacknowledged rename to check after the next start: source partition and key, target
/// partition and key, the source's value, what the target could read before.
type OpenRename = (At, Vec<u8>, At, Vec<u8>, Vec<u8>, Allowed);

/// A condition on the key a mutation writes, with the model's prediction of whether it holds.
type Guard = Option<(WriteCondition, bool)>;

/// The digest entry every put attaches (what an `IfMeta` condition compares).
fn digest(value: &[u8]) -> (String, String) {
    ("digest".to_string(), format!("{:08x}", crc32fast::hash(value)))
}

fn if_digest(value: &[u8]) -> WriteCondition {
    let (key, value) = digest(value);
    WriteCondition::IfMeta { key, value }
}

#[derive(Debug, Clone)]
enum Mutation {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        guard: Guard,
    },
    Delete {
        key: Vec<u8>,
    },
    /// A rename to a key of a partition on the same shard log (`Engine::rename_to`; the same
    /// partition: `Engine::rename`): one record. `value` is the source's, known when picked.
    Rename {
        key: Vec<u8>,
        to: At,
        to_key: Vec<u8>,
        value: Vec<u8>,
        guard: Guard,
    },
    /// A copy the node runs itself (`get_locator`, then `put_committed_copy` at the target, on
    /// any shard): no Syrup synced again.
    Copy {
        key: Vec<u8>,
        to: At,
        to_key: Vec<u8>,
        value: Vec<u8>,
        guard: Guard,
    },
}

impl Mutation {
    fn key(&self) -> &[u8] {
        match self {
            Mutation::Put { key, .. }
            | Mutation::Delete { key }
            | Mutation::Rename { key, .. }
            | Mutation::Copy { key, .. } => key,
        }
    }

    fn guard(&self) -> &Guard {
        match self {
            Mutation::Put { guard, .. } | Mutation::Rename { guard, .. } | Mutation::Copy { guard, .. } => guard,
            Mutation::Delete { .. } => &None,
        }
    }

    /// The keys it touches (partition, key).
    fn touches(&self, at: At) -> Vec<(At, Vec<u8>)> {
        let mut t = vec![(at, self.key().to_vec())];
        if let Mutation::Rename { to, to_key, .. } | Mutation::Copy { to, to_key, .. } = self {
            t.push((*to, to_key.clone()));
        }
        t
    }

    /// The keys it writes (partition, key) with the value each is left with: none when its
    /// condition fails.
    fn effects(&self, at: At) -> Vec<(At, Vec<u8>, Option<Vec<u8>>)> {
        if matches!(self.guard(), Some((_, false))) {
            return Vec::new();
        }
        match self {
            Mutation::Put { key, value, .. } => vec![(at, key.clone(), Some(value.clone()))],
            Mutation::Delete { key } => vec![(at, key.clone(), None)],
            Mutation::Rename { key, to, to_key, value, .. } => {
                vec![(at, key.clone(), None), (*to, to_key.clone(), Some(value.clone()))]
            }
            Mutation::Copy { to, to_key, value, .. } => vec![(*to, to_key.clone(), Some(value.clone()))],
        }
    }
}

/// What a run did, summed over seeds at the end.
#[derive(Debug, Default)]
struct Counts {
    ops: u64,
    acked: u64,
    crashes: u64,
    starts: u64,
    moved: u64,
    recreated: u64,
    /// Log counters summed over every log of every start: records, sections, segments deleted,
    /// flushes asked of partitions that held a log past its bound.
    records: u64,
    sections: u64,
    segments_deleted: u64,
    flushes_wanted: u64,
    renames_checked: u64,
    syrups_deleted: u64,
    /// Acknowledged conditional mutations: written, refused (each as predicted).
    guarded_written: u64,
    guarded_refused: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.ops += o.ops;
        self.acked += o.acked;
        self.crashes += o.crashes;
        self.starts += o.starts;
        self.moved += o.moved;
        self.recreated += o.recreated;
        self.records += o.records;
        self.sections += o.sections;
        self.segments_deleted += o.segments_deleted;
        self.flushes_wanted += o.flushes_wanted;
        self.renames_checked += o.renames_checked;
        self.syrups_deleted += o.syrups_deleted;
        self.guarded_written += o.guarded_written;
        self.guarded_refused += o.guarded_refused;
    }
}

struct Harness {
    seed: u64,
    sim: SimStorage,
    clock: Rc<ManualClock>,
    rng: SmallRng,
    boxes: Vec<BoxState>,
    next_uid: u64,
    engines: BTreeMap<(BoxUid, u16), E>,
    logs: Vec<CommitLog<SimStorage>>,
    model: BTreeMap<(BoxUid, u16), BTreeMap<Vec<u8>, Allowed>>,
    placement: BTreeMap<(BoxUid, u16), u16>,
    n: Counts,
}

fn config(b: BoxState, p: u16) -> EngineConfig {
    let mut c = small_config(Path::new(ROOT), p);
    c.partition_dir = PathBuf::from(format!("{ROOT}/boxes/{}-{:016x}/p{p:02}", b.name, b.uid.0));
    c.box_uid = b.uid;
    c.gc_grace_ms = 0;
    c
}

/// How a mutation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Acked,
    /// `PreconditionFailed`: acknowledged as refused, nothing written.
    Refused,
    Failed,
}

async fn run(e: E, target: Option<E>, m: Mutation) -> Ran {
    let condition = m.guard().as_ref().map(|(c, _)| c.clone());
    let r = match (m, target) {
        (Mutation::Put { key, value, .. }, _) => {
            let opts = PutOptions { user_meta: vec![digest(&value)], condition, ..PutOptions::default() };
            e.put(&key, opts, SliceBody::new(value)).await.map(|_| ())
        }
        (Mutation::Delete { key }, _) => e.delete(&key).await.map(|_| ()),
        (Mutation::Rename { key, to_key, .. }, Some(t)) => {
            e.rename_to(&key, &t, &to_key, &CopyOptions::when(condition)).await.map(|_| ())
        }
        (Mutation::Copy { key, to_key, .. }, Some(t)) => match e.get_locator(&key).await {
            Ok((l, _)) => t.put_committed_copy(&to_key, l, &CopyOptions::when(condition)).await.map(|_| ()),
            Err(e) => Err(e),
        },
        (m, None) => panic!("{m:?} needs a target"),
    };
    match r {
        Ok(()) => Ran::Acked,
        Err(Error::PreconditionFailed { .. }) => Ran::Refused,
        Err(_) => Ran::Failed,
    }
}

impl Harness {
    fn new(seed: u64) -> Self {
        let boxes = (0..BOXES).map(|name| BoxState { name, uid: BoxUid(100 + name as u64) }).collect();
        Harness {
            seed,
            sim: SimStorage::new(),
            clock: Rc::new(ManualClock::new(1_700_000_000_000)),
            rng: SmallRng::seed_from_u64(seed),
            boxes,
            next_uid: 200,
            engines: BTreeMap::new(),
            logs: Vec::new(),
            model: BTreeMap::new(),
            placement: BTreeMap::new(),
            n: Counts::default(),
        }
    }

    /// Starts the "node": reads every shard log, opens every partition on the shard the placement
    /// of this start gives it, flushes what was replayed and deletes the old segments.
    async fn start_open(&mut self) {
        self.engines.clear();
        for log in self.logs.drain(..) {
            let s = log.stats();
            self.n.records += s.records;
            self.n.sections += s.sections;
            self.n.segments_deleted += s.segments_deleted;
            self.n.flushes_wanted += s.flushes_wanted;
        }
        // Let the tasks of the last run meet the crash and finish.
        for _ in 0..64 {
            yield_now().await;
        }
        let seed = self.seed;
        let root = PathBuf::from(format!("{ROOT}/log"));
        let dirs = log_dirs(&self.sim, &root).await.unwrap_or_else(|e| panic!("seed {seed}: list logs: {e}"));
        let mut found = recover(&self.sim, &dirs).await.unwrap_or_else(|e| panic!("seed {seed}: read logs: {e}"));
        assert!(found.damage.is_empty(), "seed {seed}: a crash left damage: {:?}", found.damage);
        let live: BTreeSet<BoxUid> = self.boxes.iter().map(|b| b.uid).collect();
        found.retain(|uid, _| live.contains(&uid));
        let shard_count: u16 = self.rng.gen_range(1..=3);
        let turn: u16 = self.rng.gen_range(0..3);
        let base = found.next_segment;
        // Half the starts prepare their segments (zero-filled ahead, renamed in at the roll).
        let log_config = LogConfig {
            segment_bytes: self.rng.gen_range(600..4000),
            bytes_max: 4 * 1024,
            prepare: self.rng.gen_bool(0.5),
            ..LogConfig::default()
        };
        for s in 0..shard_count {
            let dir = root.join(candybox_core::log::format::shard_dir_name(s));
            let log = CommitLog::create(
                self.sim.clone(),
                dir,
                s,
                base,
                base + u64::from(s),
                u64::from(shard_count),
                log_config.clone(),
            )
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: start log {s}: {e}"));
            self.logs.push(log);
        }
        for b in self.boxes.clone() {
            for p in 0..PARTITIONS {
                let shard = (p + turn + b.name as u16) % shard_count;
                if self.placement.insert((b.uid, p), shard).is_some_and(|old| old != shard) {
                    self.n.moved += 1;
                }
                let log = &self.logs[usize::from(shard)];
                let replay = found.take(b.uid, p);
                let (e, _) = Engine::open_in(self.sim.clone(), self.clock.clone(), config(b, p), log, &replay)
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed}: open {b:?}/{p}: {e}"));
                e.retire_replayed().await.unwrap_or_else(|e| panic!("seed {seed}: flush replayed {b:?}/{p}: {e}"));
                self.engines.insert((b.uid, p), e);
            }
        }
        for path in &found.segments {
            match self.sim.remove(path).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => panic!("seed {seed}: remove {}: {e}", path.display()),
            }
        }
        for dir in &dirs {
            self.sim.sync_dir(dir).await.unwrap_or_else(|e| panic!("seed {seed}: sync {}: {e}", dir.display()));
        }
        self.n.starts += 1;
    }

    /// Starts and checks every key.
    async fn start(&mut self) {
        self.start_open().await;
        self.check().await;
    }

    async fn read(&self, uid: BoxUid, p: u16, key: &[u8]) -> Option<Vec<u8>> {
        let e = self.engines.get(&(uid, p)).expect("open");
        match e.get(key, None).await {
            Ok(g) => Some(
                g.body
                    .read_to_vec()
                    .unwrap_or_else(|err| panic!("seed {}: read {uid:?}/{p} {key:?}: {err}", self.seed)),
            ),
            Err(Error::NotFound) => None,
            Err(err) => panic!("seed {}: get {:?}: {err}", self.seed, String::from_utf8_lossy(key)),
        }
    }

    /// Every key of every live partition reads as one of its allowed values, which it then keeps.
    async fn check(&mut self) {
        for b in self.boxes.clone() {
            for p in 0..PARTITIONS {
                for i in 0..KEYS_PER_PARTITION {
                    let key = key_of(i);
                    let got = self.read(b.uid, p, &key).await;
                    let allowed =
                        self.model.entry((b.uid, p)).or_default().entry(key.clone()).or_insert_with(|| vec![None]);
                    assert!(
                        allowed.contains(&got),
                        "seed {}: {:?}/{p} key {}: read {:?}, allowed {:?}",
                        self.seed,
                        b,
                        String::from_utf8_lossy(&key),
                        got.as_ref().map(Vec::len),
                        allowed.iter().map(|v| v.as_ref().map(Vec::len)).collect::<Vec<_>>()
                    );
                    *allowed = vec![got];
                }
            }
        }
    }

    /// The value `key` of `at` certainly holds, when the model knows it and it is live.
    fn certain(&self, at: At, key: &[u8]) -> Option<Vec<u8>> {
        self.known(at, key).flatten()
    }

    /// What `key` of `at` certainly reads as (`Some(None)`: certainly absent), when the model
    /// knows.
    fn known(&self, at: At, key: &[u8]) -> Option<Option<Vec<u8>>> {
        match self.model.get(&at).and_then(|k| k.get(key)).map(Vec::as_slice) {
            Some([v]) => Some(v.clone()),
            Some(_) => None,
            None => Some(None),
        }
    }

    /// Sometimes a condition on `key` of `at`, when the model knows what it holds: one that
    /// holds or fails about as often.
    fn guard(&mut self, at: At, key: &[u8]) -> Guard {
        if !self.rng.gen_ratio(1, 4) {
            return None;
        }
        let current = self.known(at, key)?;
        let other: Vec<u8> = vec![self.rng.gen(); 7];
        Some(match (self.rng.gen_range(0..3), current) {
            (0, c) => (WriteCondition::IfAbsent, c.is_none()),
            (1, Some(v)) => (if_digest(&v), true),
            (_, c) => (if_digest(&other), c.as_deref() == Some(&other[..])),
        })
    }

    fn pick(&mut self) -> ((BoxUid, u16), Mutation) {
        let b = self.boxes[self.rng.gen_range(0..self.boxes.len())];
        let p = self.rng.gen_range(0..PARTITIONS);
        let key = key_of(self.rng.gen_range(0..KEYS_PER_PARTITION));
        let to_key = key_of(self.rng.gen_range(0..KEYS_PER_PARTITION));
        if let Some(value) = self.certain((b.uid, p), &key).filter(|_| self.rng.gen_ratio(1, 5)) {
            if self.rng.gen() {
                // A partition of the Box on the same shard log (maybe this one).
                let shard = self.placement.get(&(b.uid, p)).copied();
                let same: Vec<u16> =
                    (0..PARTITIONS).filter(|q| self.placement.get(&(b.uid, *q)).copied() == shard).collect();
                let q = same[self.rng.gen_range(0..same.len())];
                if q != p || to_key != key {
                    let guard = self.guard((b.uid, q), &to_key);
                    return ((b.uid, p), Mutation::Rename { key, to: (b.uid, q), to_key, value, guard });
                }
            } else {
                let q = self.rng.gen_range(0..PARTITIONS);
                if q != p || to_key != key {
                    let guard = self.guard((b.uid, q), &to_key);
                    return ((b.uid, p), Mutation::Copy { key, to: (b.uid, q), to_key, value, guard });
                }
            }
        }
        let m = if self.rng.gen_ratio(1, 4) {
            Mutation::Delete { key }
        } else {
            // Mostly inline values (one log write), some in Syrups (their fdatasync joins the
            // group commit).
            let len = if self.rng.gen_ratio(1, 5) { self.rng.gen_range(100..3000) } else { self.rng.gen_range(1..60) };
            let fill: u8 = self.rng.gen();
            let guard = self.guard((b.uid, p), &key);
            Mutation::Put {
                key,
                value: (0..len).map(|i| (i as u8).wrapping_mul(fill | 1).wrapping_add(fill)).collect(),
                guard,
            }
        };
        ((b.uid, p), m)
    }

    async fn step(&mut self) {
        let n = self.rng.gen_range(1..=8);
        let mut used = BTreeSet::new();
        let mut muts = Vec::new();
        for _ in 0..n {
            let (at, m) = self.pick();
            let touched = m.touches(at);
            if touched.iter().all(|t| !used.contains(t)) {
                used.extend(touched);
                muts.push((at, m));
            }
        }
        if std::env::var("CANDYBOX_MODEL_TRACE").is_ok() {
            for (at, m) in &muts {
                eprintln!("step {at:?} {m:?}");
            }
        }
        let crash = match self.rng.gen_range(0..100) {
            0..=9 => Some(CrashMode::DropUnsynced),
            10..=17 => Some(CrashMode::TearLastWrite { keep_bytes: self.rng.gen_range(0..400) }),
            18..=20 => Some(CrashMode::TearLastWriteAlone { keep_bytes: self.rng.gen_range(0..400) }),
            _ => None,
        };
        let mut handles = Vec::new();
        for (at, m) in &muts {
            let e = self.engines.get(at).expect("open").clone();
            let target = match m {
                Mutation::Rename { to, .. } | Mutation::Copy { to, .. } => Some(self.engines[to].clone()),
                _ => None,
            };
            handles.push(spawn(run(e, target, m.clone())));
        }
        if self.rng.gen_ratio(1, 6) {
            // A flush races the group: it may delete segments while records are written.
            let keys: Vec<_> = self.engines.keys().copied().collect();
            let e = self.engines[&keys[self.rng.gen_range(0..keys.len())]].clone();
            drop(spawn(async move {
                let _ = e.flush().await;
            }));
        }
        let recreate = crash.is_some() && self.rng.gen_ratio(1, 8);
        if let Some(mode) = crash {
            for _ in 0..self.rng.gen_range(0..60) {
                yield_now().await;
            }
            if recreate {
                self.recreate_box().await;
            }
            self.sim.crash(mode);
        }
        let mut acked = Vec::new();
        for h in handles {
            acked.push(h.await);
        }
        self.n.ops += muts.len() as u64;
        let mut renames = Vec::new();
        if std::env::var("CANDYBOX_MODEL_TRACE").is_ok() {
            eprintln!("  crash {crash:?} recreate {recreate} ran {acked:?}");
        }
        for ((at, m), ran) in muts.iter().zip(acked) {
            let ok = ran == Ran::Acked;
            if ran != Ran::Failed {
                self.n.acked += 1;
            }
            match (m.guard(), ran) {
                (Some((_, true)), Ran::Acked) => self.n.guarded_written += 1,
                (Some((_, false)), Ran::Refused) => self.n.guarded_refused += 1,
                (_, Ran::Failed) | (None, Ran::Acked) => {}
                (guard, ran) => panic!("seed {}: {m:?} ended {ran:?}, but the model predicted {guard:?}", self.seed),
            }
            if let (Mutation::Rename { key, to, to_key, value, guard: None | Some((_, true)) }, Ran::Failed) = (m, ran)
            {
                // Both or neither: checked as a pair after the next start.
                let before = self.model.get(to).and_then(|k| k.get(to_key)).cloned().unwrap_or_else(|| vec![None]);
                renames.push((*at, key.clone(), *to, to_key.clone(), value.clone(), before));
            }
            for (a, k, after) in m.effects(*at) {
                let Some(keys) = self.model.get_mut(&a) else { continue };
                let allowed = keys.entry(k).or_insert_with(|| vec![None]);
                if ok {
                    *allowed = vec![after];
                } else if !allowed.contains(&after) {
                    allowed.push(after);
                }
            }
        }
        if crash.is_some() {
            self.n.crashes += 1;
            self.start_checking(&renames).await;
        } else if self.rng.gen_ratio(1, 40) {
            // A clean restart: everything flushed, then the shard count changes.
            for e in self.engines.values() {
                e.flush().await.unwrap_or_else(|err| panic!("seed {}: flush: {err}", self.seed));
                e.close().await;
            }
            self.start().await;
        } else {
            if self.rng.gen_ratio(1, 10) {
                // Only while the "node" runs: after a crash its engines are gone with it.
                self.gc().await;
            }
            self.check().await;
        }
    }

    /// Starts after a crash, first checking that each unacknowledged rename happened whole or
    /// not at all (before the per-key checks of the start settle each key).
    async fn start_checking(&mut self, renames: &[OpenRename]) {
        self.start_open().await;
        for (from, key, to, to_key, value, target_before) in renames {
            if !self.engines.contains_key(from) || !self.engines.contains_key(to) {
                continue; // its Box was re-created
            }
            let source = self.read(from.0, from.1, key).await;
            let target = self.read(to.0, to.1, to_key).await;
            let untouched = source.as_ref() == Some(value) && target_before.contains(&target);
            let done = source.is_none() && target.as_ref() == Some(value);
            assert!(
                untouched || done,
                "seed {}: a rename {from:?}/{} -> {to:?}/{} was torn: source {:?}, target {:?}",
                self.seed,
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(to_key),
                source.map(|v| v.len()),
                target.map(|v| v.len())
            );
            self.n.renames_checked += 1;
        }
        self.check().await;
    }

    /// Box-global GC on every partition: each keeps what the others reference (the sets the
    /// node publishes), and deletes only Syrups nothing references. Every read checks the rest.
    async fn gc(&mut self) {
        let engines: Vec<_> = self.engines.iter().map(|(k, e)| (*k, e.clone())).collect();
        for (at, e) in &engines {
            let foreign: BTreeSet<_> = engines
                .iter()
                .filter(|(other, _)| other != at && other.0 == at.0)
                .flat_map(|(_, o)| o.referenced_syrups())
                .collect();
            if let Ok(r) = e.gc(&foreign).await {
                self.n.syrups_deleted += r.syrups_deleted.len() as u64;
            }
        }
    }

    /// Deletes a Box and creates it again under the same name (a new incarnation), as delete-box
    /// and create-box do, right before a crash: the old incarnation's records stay in the logs.
    async fn recreate_box(&mut self) {
        let i = self.rng.gen_range(0..self.boxes.len());
        let old = self.boxes[i];
        for p in 0..PARTITIONS {
            if let Some(e) = self.engines.remove(&(old.uid, p)) {
                e.close().await;
            }
            self.model.remove(&(old.uid, p));
        }
        let new = BoxState { name: old.name, uid: BoxUid(self.next_uid) };
        self.next_uid += 1;
        self.boxes[i] = new;
        self.n.recreated += 1;
    }
}

fn key_of(i: u32) -> Vec<u8> {
    format!("key-{i:03}").into_bytes()
}

fn seeds() -> Vec<u64> {
    match std::env::var("CANDYBOX_MODEL_SEEDS") {
        Ok(spec) => {
            let (a, b) = spec.split_once("..").expect("CANDYBOX_MODEL_SEEDS=A..B");
            (a.parse().expect("start")..b.parse().expect("end")).collect()
        }
        Err(_) => (0..8).collect(),
    }
}

#[test]
fn shared_logs_match_the_model_across_crashes_restarts_and_shard_changes() {
    let ops_per_seed: u64 = std::env::var("CANDYBOX_MODEL_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500);
    let mut t = Counts::default();
    for seed in seeds() {
        block_on(async {
            let mut h = Harness::new(seed);
            h.sim.set_yield_seed(seed);
            h.start().await;
            while h.n.ops < ops_per_seed {
                h.step().await;
            }
            // A last crash with nothing in flight, then a start with every check.
            h.sim.crash(CrashMode::DropUnsynced);
            h.start().await;
            t.add(&h.n);
        });
    }
    println!(
        "shared-log model test: {} operations ({} acknowledged), {} crashes, {} starts, {} partition moves \
         between shards, {} Boxes re-created; {} log records holding {} partition batches, {} segments deleted \
         while running; {} torn-or-not renames checked, {} Syrups deleted by Box-global GC, {} flushes asked by \
         logs over their bound; {} conditional mutations written and {} refused as predicted",
        t.ops,
        t.acked,
        t.crashes,
        t.starts,
        t.moved,
        t.recreated,
        t.records,
        t.sections,
        t.segments_deleted,
        t.renames_checked,
        t.syrups_deleted,
        t.flushes_wanted,
        t.guarded_written,
        t.guarded_refused
    );
    assert!(t.guarded_written > 0 && t.guarded_refused > 0, "conditions both held and failed");
    assert!(t.flushes_wanted > 0, "the logs' bound made partitions flush");
    assert!(t.renames_checked > 0 && t.syrups_deleted > 0, "renames crossed crashes, GC deleted Syrups");
    assert!(t.crashes > 0 && t.moved > 0 && t.recreated > 0, "the run exercised crashes, moves and re-creation");
    assert!(t.acked > t.ops / 2, "most mutations were acknowledged");
    assert!(t.sections > t.records && t.segments_deleted > 0, "records shared by partitions, segments deleted");
}
