//! End-to-end tests of the `candybox` CLI against a real `candyboxd` child process (see
//! `common`): every command, with its exit codes (0, 1 for runtime errors, 2 for usage errors) and
//! its `--json` output parsed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests fail loudly")]

mod common;

use std::process::Command;

use common::{pattern, write_file, Node};
use serde_json::Value;

fn keys_of(v: &Value) -> Vec<String> {
    v["entries"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn boxes_candies_ranges_and_exit_codes() {
    let node = Node::start(&[]);
    let tmp = tempfile::tempdir().unwrap();

    let created = node.json(&["create-box", "photos", "--partitions", "4"]);
    assert_eq!(created["name"], "photos");
    assert_eq!(created["partitions"], 4);
    assert_eq!(node.json(&["head-box", "photos"])["partitions"], 4);
    let boxes = node.json(&["list-boxes"]);
    assert!(boxes["boxes"].as_array().unwrap().iter().any(|b| b["name"] == "photos"));
    let err = node.fails(&["create-box", "photos"], 1);
    assert!(err.contains("create box photos: box already exists"), "{err}");

    let data = pattern(100_000, 3);
    let file = write_file(tmp.path(), "cat.jpg", &data);
    let put = node.json(&[
        "put",
        "photos",
        "cat.jpg",
        &file,
        "--content-type",
        "image/jpeg",
        "--meta",
        "owner=ada",
        "--meta",
        "k=v=w",
    ]);
    assert_eq!(put["size"], 100_000);
    assert_eq!(put["checksum"], crc32fast::hash(&data));
    let head = node.json(&["head", "photos", "cat.jpg"]);
    assert_eq!(head["size"], 100_000);
    assert_eq!(head["content_type"], "image/jpeg");
    assert_eq!(head["user_meta"]["owner"], "ada");
    assert_eq!(head["user_meta"]["k"], "v=w");

    assert_eq!(node.ok(&["get", "photos", "cat.jpg"]).stdout, data);
    assert_eq!(node.ok(&["get", "photos", "cat.jpg", "--range", "0-99"]).stdout, &data[..100]);
    assert_eq!(node.ok(&["get", "photos", "cat.jpg", "--range", "99000-"]).stdout, &data[99_000..]);
    assert_eq!(node.ok(&["get", "photos", "cat.jpg", "--range", "-50"]).stdout, &data[data.len() - 50..]);
    let out = tmp.path().join("copy.bin");
    node.ok(&["get", "photos", "cat.jpg", "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // stdin, with '-' and without a file argument.
    node.ok_in(&["put", "photos", "from-stdin", "-"], b"piped bytes");
    assert_eq!(node.ok(&["get", "photos", "from-stdin"]).stdout, b"piped bytes");
    node.ok_in(&["put", "photos", "empty"], b"");
    assert_eq!(node.json(&["head", "photos", "empty"])["size"], 0);

    node.ok(&["delete", "photos", "cat.jpg"]);
    let err = node.fails(&["get", "photos", "cat.jpg"], 1);
    assert!(err.contains("get photos/cat.jpg: not found"), "{err}");
    node.fails(&["head", "photos", "cat.jpg"], 1);
    node.ok(&["delete", "photos", "cat.jpg"]); // deleting an absent key succeeds
    let err = node.fails(&["head-box", "nope"], 1);
    assert!(err.contains("box not found"), "{err}");

    // Usage errors exit 2.
    node.fails(&["get", "photos"], 2);
    node.fails(&["get", "photos", "k", "--range", "9-1"], 2);
    node.fails(&["frobnicate"], 2);
    node.fails(&["delete-range", "photos"], 2);
    node.fails(&["list", "photos", "--max", "0"], 2);
    let out =
        Command::new(env!("CARGO_BIN_EXE_candybox")).args(["--server", "no-port", "list-boxes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    let err = node.fails(&["delete-box", "photos"], 1);
    assert!(err.contains("box is not empty"), "{err}");
    node.ok(&["delete-box", "photos", "--force"]);
    node.fails(&["head-box", "photos"], 1);
}

#[test]
fn list_pages_and_delete_range_cover_every_partition() {
    let node = Node::start(&[]);
    node.ok(&["create-box", "many", "--partitions", "5"]);
    let mut keys: Vec<String> = (0..40).map(|i| format!("k/{i:03}")).collect();
    keys.extend(["a", "m/1", "m/2", "z"].map(String::from));
    for k in &keys {
        node.ok_in(&["put", "many", k], k.as_bytes());
    }
    keys.sort();

    let page = node.json(&["list", "many", "--max", "7"]);
    assert_eq!(keys_of(&page), &keys[..7]);
    assert_eq!(page["next_start_after"], keys[6].as_str());
    let next = node.json(&["list", "many", "--max", "7", "--start-after", &keys[6]]);
    assert_eq!(keys_of(&next), &keys[7..14]);

    let all = node.json(&["list", "many", "--all", "--max", "7"]);
    assert_eq!(keys_of(&all), keys);
    let mut reversed = keys.clone();
    reversed.reverse();
    assert_eq!(keys_of(&node.json(&["list", "many", "--all", "--max", "3", "--reverse"])), reversed);
    let prefixed = node.json(&["list", "many", "--all", "--prefix", "k/", "--max", "6"]);
    assert_eq!(keys_of(&prefixed).len(), 40);
    let window = node.json(&["list", "many", "--start", "k/010", "--end", "k/020"]);
    assert_eq!(keys_of(&window), (10..20).map(|i| format!("k/{i:03}")).collect::<Vec<_>>());
    let text = node.ok(&["list", "many", "--all", "--max", "4"]);
    assert_eq!(String::from_utf8_lossy(&text.stdout).lines().count(), keys.len());

    node.ok(&["delete-range", "many", "--prefix", "k/"]);
    assert_eq!(keys_of(&node.json(&["list", "many", "--all"])), ["a", "m/1", "m/2", "z"]);
    node.ok(&["delete-range", "many", "--start", "m/", "--end", "m/9"]);
    assert_eq!(keys_of(&node.json(&["list", "many", "--all"])), ["a", "z"]);
}

#[test]
fn copy_and_rename_by_the_node_and_by_relay() {
    let node = Node::start(&[]);
    node.ok(&["create-box", "moves", "--partitions", "8"]);
    let data = pattern(300_000, 9);
    node.ok_in(&["put", "moves", "src"], &data);
    for (i, relay) in [false, true].into_iter().enumerate() {
        let mut args = vec!["copy", "moves", "src"];
        let target = format!("copy-{i}");
        args.push(&target);
        if relay {
            args.push("--relay");
        }
        node.ok(&args);
        assert_eq!(node.ok(&["get", "moves", &target]).stdout, data);
    }
    node.ok(&["rename", "moves", "copy-0", "renamed-0"]);
    node.fails(&["head", "moves", "copy-0"], 1);
    assert_eq!(node.ok(&["get", "moves", "renamed-0"]).stdout, data);
    let moved = node.json(&["rename", "moves", "copy-1", "renamed-1", "--relay"]);
    assert_eq!(moved["outcome"], "finalized");
    node.fails(&["head", "moves", "copy-1"], 1);
    assert_eq!(node.ok(&["get", "moves", "renamed-1", "--range", "1000-1999"]).stdout, &data[1000..2000]);
    assert_eq!(node.ok(&["get", "moves", "src"]).stdout, data);
}

#[test]
fn multipart_uploads_whole_and_step_by_step() {
    let node = Node::start(&["--multipart-part-bytes-min", "4096"]);
    let tmp = tempfile::tempdir().unwrap();
    node.ok(&["create-box", "parts", "--partitions", "3"]);

    // Three parts: 4 KiB, 4 KiB, 2 KiB.
    let data = pattern(10 * 1024, 5);
    let file = write_file(tmp.path(), "big", &data);
    let put = node.json(&["put", "parts", "big", &file, "--multipart", "--part-size", "4KiB", "--content-type", "x/y"]);
    assert_eq!(put["size"], data.len());
    assert_eq!(node.ok(&["get", "parts", "big"]).stdout, data);
    assert_eq!(node.json(&["head", "parts", "big"])["content_type"], "x/y");
    // Story: the CLI warned that parts under 5 MiB are refused, then succeeded. An object that
    // fits in one part has no part but the last: no warning.
    let small = write_file(tmp.path(), "small", &data[..3000]);
    let out = node.ok(&["put", "parts", "small", &small, "--multipart", "--part-size", "4KiB"]);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    let created = node.json(&["multipart", "create", "parts", "stepwise"]);
    let id = created["upload_id"].as_u64().unwrap().to_string();
    let p1 = pattern(5000, 1);
    let p2 = pattern(100, 2);
    let f1 = write_file(tmp.path(), "p1", &p1);
    let part = node.json(&["multipart", "upload-part", "parts", "stepwise", &id, "1", &f1]);
    assert_eq!(part["size"], 5000);
    node.ok_in(&["multipart", "upload-part", "parts", "stepwise", &id, "2", "-"], &p2);
    let uploads = node.json(&["multipart", "list-uploads", "parts"]);
    assert!(uploads["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["key"] == "stepwise"
            && u["upload_id"].as_u64().map(|n| n.to_string()).as_deref() == Some(id.as_str())));
    let parts = node.json(&["multipart", "list-parts", "parts", "stepwise", &id]);
    let sizes: Vec<u64> = parts["parts"].as_array().unwrap().iter().map(|p| p["size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [5000, 100]);
    node.ok(&["multipart", "complete", "parts", "stepwise", &id, "1", "2"]);
    let mut whole = p1.clone();
    whole.extend_from_slice(&p2);
    assert_eq!(node.ok(&["get", "parts", "stepwise"]).stdout, whole);

    let other = node.json(&["multipart", "create", "parts", "dropped"])["upload_id"].as_u64().unwrap().to_string();
    node.ok(&["multipart", "abort", "parts", "dropped", &other]);
    let uploads = node.json(&["multipart", "list-uploads", "parts"]);
    assert!(uploads["uploads"].as_array().unwrap().is_empty(), "{uploads}");
    node.fails(&["multipart", "list-parts", "parts", "dropped", &other], 1);
    node.fails(&["multipart", "upload-part", "parts", "k", "1", "0"], 2);
}

#[test]
fn topology_stats_and_routing_off() {
    let node = Node::start(&[]);
    let topology = node.json(&["topology"]);
    assert_eq!(topology["shard_count"], 2);
    assert_eq!(topology["placement"], "crc32-box-plus-partition-v1");
    assert_eq!(topology["routing"], true);
    let ports: Vec<u64> = topology["ports"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
    assert_eq!(ports, node.shard_ports);
    let off = node.json(&["--no-routing", "topology"]);
    assert_eq!(off["routing"], false);

    node.ok(&["--no-routing", "create-box", "plain"]);
    node.ok_in(&["--no-routing", "put", "plain", "k"], b"v");
    assert_eq!(node.ok(&["--no-routing", "get", "plain", "k"]).stdout, b"v");
    assert_eq!(keys_of(&node.json(&["--no-routing", "list", "plain"])), ["k"]);

    let stats = node.json(&["stats"]);
    assert_eq!(stats["shards"].as_array().unwrap().len(), 2);
    let text = node.ok(&["stats"]);
    assert!(!text.stdout.is_empty());
}

#[test]
fn a_file_larger_than_the_frame_cap_streams_both_ways() {
    let node = Node::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    node.ok(&["create-box", "large"]);
    // 20 MiB: more than one 16 MiB frame each way.
    let data = pattern(20 << 20, 11);
    let file = write_file(tmp.path(), "large.bin", &data);
    let put = node.json(&["put", "large", "blob", &file]);
    assert_eq!(put["size"], data.len());
    assert_eq!(put["checksum"], crc32fast::hash(&data));
    let out = tmp.path().join("back.bin");
    node.ok(&["get", "large", "blob", "-o", out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap() == data);
    let tail = node.ok(&["get", "large", "blob", "--range", "20000000-"]).stdout;
    assert!(tail == data[20_000_000..]);
}

/// Story: `rename src dstA` and `rename src dstB` started together both exited 0 in 37 of 40
/// trials on an 8-partition Box (18 of 20 with `--relay`, 10 of 10 on a 1-partition Box),
/// leaving two live copies and no source. Now exactly one succeeds; the other exits 1 with a
/// typed error (the source is claimed by the other rename, or already gone).
#[test]
fn concurrent_renames_of_one_key_let_exactly_one_succeed() {
    let node = Node::start(&[]);
    for (box_name, partitions) in [("claims-8", "8"), ("claims-1", "1")] {
        node.ok(&["create-box", box_name, "--partitions", partitions]);
        for trial in 0..8 {
            let relay = trial % 2 == 1;
            let src = format!("item-{trial}");
            node.ok_in(&["put", box_name, &src, "-"], b"work item");
            let targets = [format!("taken-a-{trial}"), format!("taken-b-{trial}")];
            let node = &node;
            let outs: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = targets
                    .iter()
                    .map(|t| {
                        let mut args = vec!["rename", box_name, src.as_str(), t.as_str()];
                        if relay {
                            args.push("--relay");
                        }
                        s.spawn(move || node.run(&args, b""))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let winners = outs.iter().filter(|o| o.status.success()).count();
            assert_eq!(winners, 1, "{box_name} trial {trial} (relay {relay}): exactly one rename may succeed");
            for o in outs.iter().filter(|o| !o.status.success()) {
                assert_eq!(o.status.code(), Some(1));
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(err.contains("conflict") || err.contains("not found"), "{err}");
            }
            let live = targets.iter().filter(|t| node.run(&["head", box_name, t], b"").status.success()).count();
            assert_eq!(live, 1, "{box_name} trial {trial}: one destination holds the item");
            assert_eq!(node.run(&["head", box_name, &src], b"").status.code(), Some(1), "the source is gone");
        }
    }
}

/// Story: `candybox list … | head` printed `candybox: write to stdout: Broken pipe` and exited 1.
/// A reader that goes away ends the command quietly with exit 0.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let node = Node::start(&[]);
    node.ok(&["create-box", "piped"]);
    for i in 0..20 {
        node.ok_in(&["put", "piped", &format!("k{i:02}"), "-"], b"x");
    }
    for args in [&["list", "piped", "--all"][..], &["--json", "list", "piped", "--all"][..], &["list-boxes"][..]] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_candybox"))
            .args(["--server", &node.listen])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the command has connected, let alone written.
        drop(child.stdout.take());
        let out = common::wait_with_timeout(child, std::time::Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Conditional put and delete (issue 14): `--if-none-match '*'`, `--if-match VERSION` (as put and
/// head print it) and `--if-unmodified-since MS`; a failed condition exits 1 naming the current
/// version and writes nothing; a bad version or value is a usage error (2), as are two
/// conditions at once or a condition on several keys.
#[test]
fn conditional_put_and_delete() {
    let node = Node::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    node.json(&["create-box", "cond", "--partitions", "4"]);
    let one = write_file(tmp.path(), "one", &pattern(3000, 1));
    let two = write_file(tmp.path(), "two", &pattern(3000, 2));

    let put = node.json(&["put", "cond", "k", &one, "--if-none-match", "*"]);
    let v1 = put["version"].as_str().unwrap().to_owned();
    assert_eq!(node.json(&["head", "cond", "k"])["version"], v1.as_str());
    let err = node.fails(&["put", "cond", "k", &two, "--if-none-match", "*"], 1);
    assert!(err.contains("precondition failed") && err.contains(&v1), "names the current version: {err}");
    assert_eq!(node.ok(&["get", "cond", "k"]).stdout, pattern(3000, 1), "nothing written");

    let v2 = node.json(&["put", "cond", "k", &two, "--if-match", &v1])["version"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);
    let err = node.fails(&["put", "cond", "k", &one, "--if-match", &v1], 1);
    assert!(err.contains(&v2), "{err}");
    let err = node.fails(&["delete", "cond", "k", "--if-unmodified-since", "1"], 1);
    assert!(err.contains("precondition failed"), "{err}");
    node.ok(&["delete", "cond", "k", "--if-match", &v2]);
    node.fails(&["head", "cond", "k"], 1);

    // Copy and rename check their target; a refused rename keeps its source.
    node.json(&["put", "cond", "src", &one]);
    let dst = node.json(&["put", "cond", "dst", &two])["version"].as_str().unwrap().to_owned();
    let err = node.fails(&["rename", "cond", "src", "dst", "--if-none-match", "*"], 1);
    assert!(err.contains("precondition failed") && err.contains(&dst), "{err}");
    assert_eq!(node.ok(&["get", "cond", "src"]).stdout, pattern(3000, 1));
    node.ok(&["copy", "cond", "src", "fresh", "--if-none-match", "*"]);
    node.ok(&["rename", "cond", "src", "dst", "--if-match", &dst]);
    assert_eq!(node.ok(&["get", "cond", "dst"]).stdout, pattern(3000, 1));
    node.fails(&["head", "cond", "src"], 1);

    for (args, what) in [
        (vec!["delete", "cond", "a", "b", "--if-none-match", "*"], "one key only"),
        (vec!["copy", "cond", "fresh", "x", "--meta", "a=b"], "only with --replace-meta"),
        (vec!["put", "cond", "k", &one, "--if-match", "md5:zz"], "not a hex digest"),
        (vec!["put", "cond", "k", &one, "--digest", "sha3"], "unknown digest"),
        (vec!["put", "cond", "k", &one, "--if-match", "yesterday"], "physical_ms.logical@node"),
        (vec!["put", "cond", "k", &one, "--if-none-match", "abc"], "only '*'"),
        (vec!["put", "cond", "k", &one, "--if-none-match", "*", "--if-match", &v2], "cannot be used with"),
    ] {
        let err = node.fails(&args, 2);
        assert!(err.contains(what), "{args:?}: {err}");
    }
}

/// Digests, metadata replacement, delete of several keys and listings with metadata (issue 14):
/// `put --digest` stores what the client computed while streaming, `head` and `list --with-meta`
/// show it, `--if-match KIND:HEX` compares it; `set-meta` and `copy --replace-meta` rewrite
/// metadata in place; `delete` of several keys answers per key and exits 1 when one failed.
#[test]
fn digests_metadata_and_delete_many() {
    let node = Node::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    node.json(&["create-box", "sem", "--partitions", "4"]);
    let data = pattern(200_000, 5);
    let file = write_file(tmp.path(), "f", &data);
    // The expected digest from coreutils, not from the library under test.
    let md5sum = Command::new("md5sum").arg(&file).output().expect("run md5sum (coreutils)");
    let md5 = String::from_utf8(md5sum.stdout).unwrap().split_whitespace().next().unwrap().to_owned();
    let put = node.json(&["put", "sem", "k", &file, "--digest", "md5", "--digest", "sha256", "--meta", "who=me"]);
    assert!(put["version"].is_string());
    let head = node.json(&["head", "sem", "k"]);
    assert_eq!(head["user_meta"]["digest-md5"], md5.as_str(), "head shows the digest: {head}");
    assert_eq!(head["user_meta"]["who"], "me");
    assert_eq!(head["user_meta"]["digest-sha256"].as_str().map(str::len), Some(64));
    let text = String::from_utf8(node.ok(&["head", "sem", "k"]).stdout).unwrap();
    assert!(text.contains(&format!("meta digest-md5: {md5}")), "{text}");

    // If-Match on the content digest.
    let err = node.fails(&["delete", "sem", "k", "--if-match", "md5:0123456789abcdef0123456789abcdef"], 1);
    assert!(err.contains("precondition failed"), "{err}");
    node.ok(&["put", "sem", "k", &file, "--if-match", &format!("md5:{md5}"), "--digest", "md5"]);

    // Metadata rewritten in place, and by a copy.
    let set = node.json(&["set-meta", "sem", "k", "--content-type", "text/x", "--meta", "stage=2"]);
    assert_ne!(set["version"], put["version"]);
    let head = node.json(&["head", "sem", "k"]);
    assert_eq!((head["content_type"].as_str(), head["user_meta"]["stage"].as_str()), (Some("text/x"), Some("2")));
    assert!(head["user_meta"].get("digest-md5").is_none(), "set-meta replaces all user metadata");
    assert_eq!(node.ok(&["get", "sem", "k"]).stdout, data, "the bytes are unchanged");
    node.ok(&["copy", "sem", "k", "k2", "--replace-meta", "--content-type", "image/png"]);
    let h2 = node.json(&["head", "sem", "k2"]);
    assert_eq!(
        (h2["content_type"].as_str(), h2["user_meta"].as_object().map(|m| m.len())),
        (Some("image/png"), Some(0))
    );
    node.ok(&["copy", "sem", "k", "k3", "--relay", "--if-none-match", "*"]);
    node.fails(&["set-meta", "sem", "absent", "--meta", "a=b"], 1);

    // Listing with metadata.
    let listed = node.json(&["list", "sem", "--with-meta"]);
    let k = listed["entries"].as_array().unwrap().iter().find(|e| e["key"] == "k").unwrap().clone();
    assert_eq!(k["user_meta"]["stage"], "2");
    let plain = node.json(&["list", "sem"]);
    assert!(plain["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["user_meta"].as_object().is_some_and(|m| m.is_empty())));

    // Several keys in one request: one result each; an absent key is deleted too.
    let out = node.json(&["delete", "sem", "k", "k2", "k3", "absent"]);
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["results"].as_array().map(Vec::len), Some(4));
    assert!(keys_of(&node.json(&["list", "sem"])).is_empty());
}

/// Versioned Boxes from the command line (issue 14): `create-box --versioning enabled`,
/// `list-versions`, `get`/`head`/`delete --version-id`, `copy --source-version`,
/// `box versioning BOX suspend`, and null versions printed as `null`.
#[test]
fn versions_from_the_command_line() {
    let node = Node::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let created = node.json(&["create-box", "ver", "--partitions", "2", "--versioning", "enabled"]);
    assert_eq!(created["versioning"], "enabled");
    let one = write_file(tmp.path(), "one", &pattern(5000, 1));
    let two = write_file(tmp.path(), "two", &pattern(300, 2));
    let v1 = node.json(&["put", "ver", "k", &one])["version"].as_str().unwrap().to_owned();
    let v2 = node.json(&["put", "ver", "k", &two])["version"].as_str().unwrap().to_owned();
    let del = node.json(&["delete", "ver", "k"]);
    assert_eq!(del["delete_marker"], true, "{del}");
    let marker = del["version"].as_str().unwrap().to_owned();
    node.fails(&["get", "ver", "k"], 1);

    let listed = node.json(&["list-versions", "ver"]);
    let versions: Vec<(String, bool, bool)> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["version"].as_str().unwrap().to_owned(), e["delete_marker"] == true, e["is_latest"] == true))
        .collect();
    assert_eq!(versions, vec![(marker.clone(), true, true), (v2.clone(), false, false), (v1.clone(), false, false)]);
    let text = String::from_utf8(node.ok(&["list-versions", "ver", "--max", "1"]).stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one entry per page: {text}");

    assert_eq!(node.ok(&["get", "ver", "k", "--version-id", &v1]).stdout, pattern(5000, 1));
    assert_eq!(node.json(&["head", "ver", "k", "--version-id", &v2])["size"], 300);
    let err = node.fails(&["get", "ver", "k", "--version-id", &marker], 1);
    assert!(err.contains("delete marker"), "{err}");
    node.ok(&["delete", "ver", "k", "--version-id", &marker]);
    assert_eq!(node.ok(&["get", "ver", "k"]).stdout, pattern(300, 2), "the marker gone, v2 is current");
    node.ok(&["copy", "ver", "k", "old", "--source-version", &v1]);
    assert_eq!(node.ok(&["get", "ver", "old"]).stdout, pattern(5000, 1));

    let suspended = node.json(&["box", "versioning", "ver", "suspend"]);
    assert_eq!(suspended["versioning"], "suspended");
    assert_eq!(node.json(&["head-box", "ver"])["versioning"], "suspended");
    let null = node.json(&["put", "ver", "k", &one]);
    assert_eq!(null["version"], "null", "{null}");
    assert_eq!(node.ok(&["get", "ver", "k", "--version-id", "null"]).stdout, pattern(5000, 1));
    for (args, what) in [
        (vec!["delete", "ver", "a", "b", "--version-id", "null"], "one key only"),
        (vec!["rename", "ver", "a", "b", "--source-version", "null"], "is for copy"),
        (vec!["get", "ver", "k", "--version-id", "yesterday"], "physical_ms.logical@node"),
        (vec!["box", "versioning", "ver", "off"], "invalid value"),
    ] {
        let err = node.fails(&args, 2);
        assert!(err.contains(what), "{args:?}: {err}");
    }
}
