//! Crash test on real files: a child process makes durable puts and reports each acknowledgement
//! on stdout; the parent kills it with SIGKILL at a random moment, reopens the partition, and
//! checks that every acknowledged put reads back with exactly its bytes. Bounded: a fixed number
//! of rounds, each child stops by itself after a fixed number of puts.
//!
//! Run: `cargo test -p candybox-core --test crash_kill` (the binary runs itself with `--child`).

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    rc::Rc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use candybox_core::{
    engine::{Engine, EngineConfig, PutOptions, SliceBody},
    runtime::{block_on, spawn, SystemClock},
    storage::uring::UringStorage,
    types::BoxUid,
};
use rand::{rngs::SmallRng, Rng, SeedableRng};

const ROUNDS: u64 = 8;
const CHILD_PUTS_MAX: u64 = 20_000;
const CHILD_TASKS: u64 = 8;

fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir.join("partitions/crash/0"), dir.join("syrups"), BoxUid(7), 0);
    // Small sizes so flushes, Syrup rolls and compactions happen while the child is killed.
    c.memtable_bytes = 64 * 1024;
    c.syrup_roll_bytes = 4 * 1024 * 1024;
    c.chunk_bytes = 4096;
    c.table_target_bytes = 64 * 1024;
    c.level_base_bytes = 256 * 1024;
    c
}

/// The bytes of a key, derived from the key so the parent can check them.
fn body_of(key: &str) -> Vec<u8> {
    let seed = crc32fast::hash(key.as_bytes());
    let mut rng = SmallRng::seed_from_u64(u64::from(seed));
    let len = match seed % 10 {
        0..=4 => rng.gen_range(0..2000),
        5..=8 => rng.gen_range(2000..40_000),
        _ => rng.gen_range(40_000..300_000),
    };
    (0..len).map(|_| rng.gen()).collect()
}

fn child(dir: &Path, round: u64) {
    block_on(async {
        let (engine, _) =
            Engine::open(UringStorage::new(), Rc::new(SystemClock), config(dir)).await.expect("child open");
        let mut tasks = Vec::new();
        for t in 0..CHILD_TASKS {
            let e = engine.clone();
            tasks.push(spawn(async move {
                for i in 0..CHILD_PUTS_MAX / CHILD_TASKS {
                    let key = format!("r{round}/t{t}/k{i:05}");
                    let body = body_of(&key);
                    let pieces: Vec<Bytes> = body.chunks(7000).map(Bytes::copy_from_slice).collect();
                    e.put(key.as_bytes(), PutOptions::default(), SliceBody::pieces(pieces)).await.expect("child put");
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ACK {key}");
                    let _ = out.flush();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    });
}

fn parent() -> Result<(), String> {
    let tmp = tempfile::tempdir_in(std::env::var("CARGO_TARGET_TMPDIR").unwrap_or_else(|_| ".".into()))
        .map_err(|e| e.to_string())?;
    let dir: PathBuf = tmp.path().to_path_buf();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let mut acked: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .arg("--child")
            .arg(&dir)
            .arg(round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn child: {e}"))?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let reader =
            std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<String>>());
        let delay = Duration::from_millis(rng.gen_range(50..600));
        let started = Instant::now();
        while started.elapsed() < delay {
            if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // SIGKILL: no destructor, no flush, no chance to finish anything in flight.
        let _ = child.kill();
        let status = child.wait().map_err(|e| e.to_string())?;
        let lines = reader.join().map_err(|_| "reader thread panicked")?;
        let round_acks: Vec<String> = lines.iter().filter_map(|l| l.strip_prefix("ACK ").map(str::to_owned)).collect();
        println!("round {round}: killed after {delay:?} ({status}); {} puts acknowledged", round_acks.len());
        acked.extend(round_acks);
        // Reopen and check every put acknowledged so far, in every round.
        let bad = block_on(async {
            let (engine, report) = Engine::open(UringStorage::new(), Rc::new(SystemClock), config(&dir))
                .await
                .map_err(|e| format!("reopen: {e}"))?;
            if !report.torn_tails.is_empty() {
                println!("  recovery discarded torn tails: {:?}", report.torn_tails);
            }
            for key in &acked {
                let got = engine.get(key.as_bytes(), None).await.map_err(|e| format!("acknowledged {key}: {e}"))?;
                let bytes = got.body.read_to_vec().map_err(|e| format!("read {key}: {e}"))?;
                if bytes != body_of(key) {
                    return Err(format!(
                        "acknowledged {key}: bytes differ ({} vs {})",
                        bytes.len(),
                        body_of(key).len()
                    ));
                }
            }
            engine.close().await;
            Ok::<(), String>(())
        });
        bad?;
    }
    if acked.is_empty() {
        return Err("no put was acknowledged in any round: the test proved nothing".into());
    }
    println!("{} acknowledged puts survived {ROUNDS} SIGKILLs", acked.len());
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let dir = PathBuf::from(args.get(2).expect("child dir"));
        let round: u64 = args.get(3).and_then(|s| s.parse().ok()).expect("child round");
        child(&dir, round);
        return;
    }
    // Listing mode (`cargo test -- --list`) and filters other than ours run nothing.
    if args.iter().any(|a| a == "--list") {
        println!("crash_kill: test");
        return;
    }
    match parent() {
        Ok(()) => println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out"),
        Err(e) => {
            println!("crash_kill FAILED: {e}");
            println!("test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
            std::process::exit(1);
        }
    }
}
