//! The crash loop: `kill -9` under concurrent writers, copies, renames and deletes, then every
//! acknowledged mutation is checked byte for byte, cycle after cycle on the same data directory
//! (with eager maintenance, so flushes, compactions, space reclamation and GC run under the kills
//! too, and small commit log segments, so the shards' logs roll and delete segments under them).
//!
//! Each of four workers owns its keys (so its mutations are ordered) and keeps a model: the state
//! every acknowledged mutation left, and for the one mutation in flight when the node died, the
//! joint states it may have left (before or after; a cross-partition rename may also leave both
//! keys live, never neither). After each restart, once pending renames have settled, every key of
//! every worker must read back byte for byte as the model says.
//!
//! CI runs `CANDYBOX_CRASH_CYCLES` (default 3) cycles; by hand, hundreds:
//! `CANDYBOX_CRASH_CYCLES=200 cargo test --release -p candybox-shards --test e2e_crash_loop -- --nocapture`.

mod harness;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use candybox_wire::client::{ByteRange, ClientError, PutOptions, TokioClient};
use harness::{pattern, Node};
use rand::{rngs::SmallRng, Rng, SeedableRng};

/// A Candy's content, as a fingerprint of its bytes (CRC-32 and length); `None` when absent.
type Content = Option<u64>;

const ARGS: &[&str] = &[
    "--rename-intent-abandon-ms",
    "300",
    "--gc-grace-ms",
    "100",
    "--maintenance-interval-ms",
    "50",
    "--reclaim-scan-interval-ms",
    "0",
    "--syrup-roll-bytes",
    "1048576",
    "--syrup-compact-bytes-min",
    "262144",
    "--memtable-bytes",
    "262144",
    "--l0-compaction-trigger",
    "2",
    // Small commit log segments and bound: the shards' logs roll, delete segments and ask
    // partitions to flush under the kills too.
    "--log-segment-bytes",
    "131072",
    "--log-bytes-max",
    "524288",
];
const WORKERS: u64 = 4;
const KEYS_PER_WORKER: u64 = 40;

#[derive(Debug, Default, Clone)]
struct Model {
    /// Every key's state after the last acknowledged mutation.
    known: BTreeMap<String, Content>,
    /// The mutation in flight at the kill: the joint states of its keys it may have left (before;
    /// after; for a cross-partition rename also both keys live — never neither).
    uncertain: Vec<BTreeMap<String, Content>>,
    acked: u64,
}

impl Model {
    fn get(&self, key: &str) -> Content {
        self.known.get(key).copied().flatten()
    }
}

fn key(w: u64, k: u64) -> String {
    format!("w{w}/k{k:03}")
}

fn state(pairs: &[(&String, Content)]) -> BTreeMap<String, Content> {
    pairs.iter().map(|(k, c)| ((*k).clone(), *c)).collect()
}

/// One worker: random mutations on its own keys until the node dies or `until`.
async fn work(c: TokioClient, w: u64, seed: u64, model: Arc<Mutex<Model>>, until: Instant) {
    let mut rng = SmallRng::seed_from_u64(seed);
    while Instant::now() < until {
        let a = key(w, rng.gen_range(0..KEYS_PER_WORKER));
        let b = key(w, rng.gen_range(0..KEYS_PER_WORKER));
        let current = model.lock().expect("model").clone();
        let (before, after) = (current.get(&a), current.get(&b));
        // The joint states the mutation may leave: [after it, before it, (others)].
        let (states, result): (Vec<BTreeMap<String, Content>>, Result<(), ClientError>) = match rng.gen_range(0..10) {
            0..=4 => {
                let body = Bytes::from(pattern(rng.gen(), rng.gen_range(0..48_000usize)));
                let states = vec![state(&[(&a, Some(fingerprint(&body)))]), state(&[(&a, before)])];
                model.lock().expect("model").uncertain = states.clone();
                (states, c.put_bytes("loop", a.as_bytes(), &PutOptions::default(), body).await.map(|_| ()))
            }
            5..=6 => {
                let states = vec![state(&[(&a, None)]), state(&[(&a, before)])];
                model.lock().expect("model").uncertain = states.clone();
                (states, c.delete("loop", a.as_bytes()).await)
            }
            7 if a != b && before.is_some() => {
                let states = vec![state(&[(&b, before)]), state(&[(&b, after)])];
                model.lock().expect("model").uncertain = states.clone();
                (states, c.copy("loop", a.as_bytes(), b.as_bytes()).await.map(|_| ()))
            }
            8..=9 if a != b && before.is_some() => {
                let states = vec![
                    state(&[(&a, None), (&b, before)]),
                    state(&[(&a, before), (&b, after)]),
                    state(&[(&a, before), (&b, before)]),
                ];
                model.lock().expect("model").uncertain = states.clone();
                (states, c.rename("loop", a.as_bytes(), b.as_bytes()).await.map(|_| ()))
            }
            _ => continue,
        };
        match result {
            Ok(()) => {}
            // Refused, nothing changed: a rename of a key that another rename still claims (one
            // left pending by the last kill, until its sweep settles it).
            Err(ClientError::Conflict { .. }) => {
                model.lock().expect("model").uncertain.clear();
                continue;
            }
            // The node died under us: what this mutation did is uncertain.
            Err(_) => return,
        }
        let mut m = model.lock().expect("model");
        m.known.extend(states.into_iter().next().unwrap_or_default());
        m.uncertain.clear();
        m.acked += 1;
    }
}

async fn read(c: &TokioClient, key: &str) -> Content {
    match c.get_to_vec("loop", key.as_bytes(), ByteRange::Whole).await {
        Ok((_, bytes)) => Some(fingerprint(&bytes)),
        Err(ClientError::NotFound { .. }) => None,
        Err(e) => panic!("{key}: read failed after restart: {e}"),
    }
}

/// CRC-32 and length of `bytes`: a byte-for-byte check of the content (a different byte changes
/// the CRC; a different length the high bits).
fn fingerprint(bytes: &[u8]) -> u64 {
    u64::from(crc32fast::hash(bytes)) | ((bytes.len() as u64) << 32)
}

/// Checks every key of every worker against its model, then adopts what the keys of an
/// in-flight mutation hold as known; returns how many keys were checked.
async fn verify(c: &TokioClient, models: &[Arc<Mutex<Model>>], cycle: u64) -> u64 {
    let mut checked = 0;
    for (w, model) in models.iter().enumerate() {
        let m = model.lock().expect("model").clone();
        let mut got = BTreeMap::new();
        for k in 0..KEYS_PER_WORKER {
            let name = key(w as u64, k);
            got.insert(name.clone(), read(c, &name).await);
            checked += 1;
        }
        let in_flight: Vec<&String> = m.uncertain.first().map(|s| s.keys().collect()).unwrap_or_default();
        for (name, content) in &got {
            if !in_flight.contains(&name) {
                assert_eq!(*content, m.get(name), "cycle {cycle}: {name}: an acknowledged state was lost");
            }
        }
        if !m.uncertain.is_empty() {
            let left: BTreeMap<String, Content> = in_flight.iter().map(|k| ((*k).clone(), got[*k])).collect();
            assert!(
                m.uncertain.contains(&left),
                "cycle {cycle}: the mutation in flight left {left:?}; allowed: {:?}",
                m.uncertain
            );
            let mut m = model.lock().expect("model");
            m.known.extend(left);
            m.uncertain.clear();
        }
    }
    checked
}

#[tokio::test(flavor = "current_thread")]
async fn acknowledged_mutations_survive_repeated_sigkill() {
    let cycles: u64 = std::env::var("CANDYBOX_CRASH_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut node = Node::start(dir.path(), ARGS, &[]);
    node.client(true).await.create_box("loop", Some(8)).await.expect("create box");
    let models: Vec<Arc<Mutex<Model>>> = (0..WORKERS).map(|_| Arc::default()).collect();
    let mut rng = SmallRng::seed_from_u64(cycles);
    let started = Instant::now();
    let mut total_acked = 0;
    for cycle in 0..cycles {
        let run_ms = rng.gen_range(300..1500);
        let until = Instant::now() + Duration::from_millis(5_000);
        let mut tasks = Vec::new();
        for (w, model) in models.iter().enumerate() {
            let c = node.client(w % 2 == 0).await;
            tasks.push(tokio::spawn(work(c, w as u64, rng.gen(), model.clone(), until)));
        }
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
        node.kill();
        for t in tasks {
            t.await.expect("worker");
        }
        node.restart();
        let c = node.client(true).await;
        // A rename in flight at the kill settles first (finalized, or abandoned after the short
        // window): only then are its keys in their final state.
        // The gauge is summed at the end of each maintenance pass: wait for two passes of every
        // shard, then for the gauge.
        harness::eventually(Duration::from_secs(30), "pending rename intents settle", || async {
            node.metric_sum("candybox_maintenance_passes_total") >= 4.0
                && node.metric_sum("candybox_rename_intents_pending") == 0.0
        })
        .await;
        let checked = verify(&c, &models, cycle).await;
        let acked: u64 = models.iter().map(|m| m.lock().expect("model").acked).sum();
        println!(
            "cycle {cycle}: killed after {run_ms} ms; {acked} mutations acknowledged so far; {checked} keys verified"
        );
        total_acked = acked;
    }
    println!(
        "crash loop: {cycles} cycles, {total_acked} acknowledged mutations, none lost, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(total_acked > 0, "the workers must get mutations acknowledged");
}
