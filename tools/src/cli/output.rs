//! What the CLI prints on stdout: text for people, or JSON with `--json`.
//!
//! Invariants:
//! - With `--json`, stdout holds exactly one JSON document per command (`list --all` streams
//!   one document page by page), and nothing else.
//! - Keys are printed as text (lossy for keys that are not UTF-8).
//! - A reader that goes away (`candybox list … | head`) ends the command quietly with exit 0, as
//!   any Unix tool does; no `Broken pipe` message.

use std::io::Write;

/// Prints one line on stdout like `println!`, but a closed stdout ends the process quietly
/// ([`stdout_closed`]) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            crate::output::stdout_failed(&e);
        }
    };
}

/// True when `e` (anywhere in its chain) says the reader of stdout went away.
pub fn stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// A failed write to stdout: quiet exit 0 when the reader went away, else the usual one-line
/// error and exit 1.
pub fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("candybox: write to stdout: {e}");
    std::process::exit(1);
}

use anyhow::{Context, Result};
use candybox_wire::client::{
    BoxInfo, CandyMeta, DeleteDone, DeleteOutcome, Hlc, ListEntry, ListPage, PartInfo, PutDone, RenameOutcome,
    ShardStats, Topology, UploadInfo, VersionPage,
};
use serde_json::{json, Value};

/// The output mode.
pub struct Out {
    json: bool,
}

fn hlc(h: &Hlc) -> Value {
    json!({ "physical_ms": h.physical_ms, "logical": h.logical, "node": h.node })
}

/// A version id as the CLI prints and reads it: `physical_ms.logical@node`, or `null` for a
/// versioned Box's null version.
fn version_id(h: &Hlc) -> String {
    if *h == Hlc::ZERO {
        "null".to_string()
    } else {
        h.to_string()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn meta_json(meta: &[(String, String)]) -> Value {
    Value::Object(meta.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

fn entry_json(e: &ListEntry) -> Value {
    json!({
        "key": e.key_lossy(),
        "size": e.size,
        "checksum": e.checksum,
        "hlc": hlc(&e.hlc),
        "version": version_id(&e.hlc),
        "content_type": e.content_type,
        "created_ms": e.created_ms,
        "user_meta": meta_json(&e.user_meta),
    })
}

impl Out {
    /// Text, or JSON when `json`.
    pub fn new(json: bool) -> Out {
        Out { json }
    }

    fn print(&self, value: &Value) {
        say!("{value}");
    }

    /// A mutation that reports nothing but success.
    pub fn done(&self, message: &str) {
        if self.json {
            self.print(&json!({ "ok": true }));
        } else {
            say!("{message}");
        }
    }

    fn box_json(b: &BoxInfo) -> Value {
        json!({
            "name": b.name,
            "partitions": b.partitions,
            "created_ms": b.created_ms,
            "box_uid": b.box_uid,
            "node": b.node,
            "versioning": b.versioning.to_string(),
        })
    }

    /// One Box.
    pub fn box_info(&self, b: &BoxInfo) {
        if self.json {
            self.print(&Self::box_json(b));
        } else {
            say!(
                "{}\tpartitions {}\tcreated_ms {}\tuid {:#x}\tnode {}\tversioning {}",
                b.name,
                b.partitions,
                b.created_ms,
                b.box_uid,
                b.node,
                b.versioning
            );
        }
    }

    /// Every Box.
    pub fn box_list(&self, boxes: &[BoxInfo]) {
        if self.json {
            self.print(&json!({ "boxes": boxes.iter().map(Self::box_json).collect::<Vec<_>>() }));
        } else {
            for b in boxes {
                self.box_info(b);
            }
        }
    }

    /// A finished put (or completed upload).
    pub fn put_done(&self, box_name: &str, key: &str, done: Option<&PutDone>) {
        if self.json {
            match done {
                Some(d) => self.print(&json!({
                    "box": box_name, "key": key, "size": d.size, "checksum": d.checksum, "hlc": hlc(&d.hlc),
                    "version": version_id(&d.hlc)
                })),
                None => self.print(&json!({ "box": box_name, "key": key })),
            }
        } else {
            match done {
                Some(d) => {
                    say!(
                        "stored {box_name}/{key}: {} bytes, crc32 {:#010x}, version {}",
                        d.size,
                        d.checksum,
                        version_id(&d.hlc)
                    )
                }
                None => say!("stored {box_name}/{key}"),
            }
        }
    }

    /// A Candy's metadata.
    pub fn candy_meta(&self, key: &str, m: &CandyMeta) {
        if self.json {
            let meta = meta_json(&m.user_meta);
            self.print(&json!({
                "key": key,
                "size": m.size,
                "checksum": m.checksum,
                "hlc": hlc(&m.hlc),
                "version": version_id(&m.hlc),
                "content_type": m.content_type,
                "user_meta": meta,
                "created_ms": m.created_ms,
            }));
        } else {
            say!("key: {key}");
            say!("size: {}", m.size);
            say!("checksum: {:#010x}", m.checksum);
            say!("content-type: {}", m.content_type);
            say!("created_ms: {}", m.created_ms);
            say!("version: {}", version_id(&m.hlc));
            for (k, v) in &m.user_meta {
                say!("meta {k}: {v}");
            }
        }
    }

    /// The outcomes of a delete-many, one per key; true when every key was deleted.
    pub fn deleted_many(&self, box_name: &str, outcomes: &[DeleteOutcome]) -> bool {
        let all_ok = outcomes.iter().all(|o| o.result.is_ok());
        if self.json {
            let results: Vec<Value> = outcomes
                .iter()
                .map(|o| match &o.result {
                    Ok(d) => json!({
                        "key": text(&o.key),
                        "deleted": true,
                        "delete_marker": d.delete_marker,
                        "version": (d.version != Hlc::ZERO || d.delete_marker).then(|| version_id(&d.version)),
                    }),
                    Err(e) => json!({ "key": text(&o.key), "deleted": false, "error": e.to_string() }),
                })
                .collect();
            self.print(&json!({ "box": box_name, "ok": all_ok, "results": results }));
        } else {
            for o in outcomes {
                match &o.result {
                    Ok(_) => say!("deleted {box_name}/{}", text(&o.key)),
                    Err(e) => eprintln!("candybox: delete {box_name}/{}: {e}", text(&o.key)),
                }
            }
        }
        all_ok
    }

    /// A page of versions (`next`: the markers of the next page, on stderr in text).
    pub fn versions(&self, page: &VersionPage) {
        let id = version_id;
        if self.json {
            let entries: Vec<Value> = page
                .entries
                .iter()
                .map(|e| {
                    json!({
                        "key": text(&e.key),
                        "version": id(&e.version),
                        "is_latest": e.is_latest,
                        "delete_marker": e.delete_marker,
                        "size": e.size,
                        "checksum": e.checksum,
                        "content_type": e.content_type,
                        "modified_ms": e.modified_ms,
                        "user_meta": meta_json(&e.user_meta),
                    })
                })
                .collect();
            let next = page.next.as_ref().map(|(k, v)| json!({ "key_marker": text(k), "version_marker": id(v) }));
            self.print(&json!({ "entries": entries, "next": next }));
        } else {
            for e in &page.entries {
                let what = if e.delete_marker { "delete-marker".to_string() } else { e.size.to_string() };
                let latest = if e.is_latest { "\tlatest" } else { "" };
                say!("{}\t{}\t{what}{latest}", text(&e.key), id(&e.version));
            }
            if let Some((k, v)) = &page.next {
                eprintln!("more after: --key-marker {} --version-marker {}", text(k), id(v));
            }
        }
    }

    /// A delete that says what it did (a versioned Box's delete marker).
    pub fn deleted(&self, box_name: &str, key: &str, d: &DeleteDone) {
        let version = (d.version != Hlc::ZERO || d.delete_marker).then(|| version_id(&d.version));
        if self.json {
            self.print(&json!({ "ok": true, "delete_marker": d.delete_marker, "version": version }));
        } else if d.delete_marker {
            say!("deleted {box_name}/{key}: delete marker {}", d.version);
        }
    }

    /// A listing printer: one page, or (with `all`) every page as one document.
    pub fn lister(&self, all: bool) -> Lister {
        Lister { json: self.json, all, first: true, out: std::io::stdout().lock() }
    }

    /// A copy or rename.
    pub fn moved(&self, verb: &str, source: &str, target: &str, outcome: Option<RenameOutcome>) {
        if self.json {
            let mut v = json!({ "source": source, "target": target });
            if let Some(o) = outcome {
                v["outcome"] = json!(o.to_string());
            }
            self.print(&v);
        } else {
            match outcome {
                Some(o) => say!("{verb} {source} to {target} ({o})"),
                None => say!("{verb} {source} to {target}"),
            }
        }
    }

    /// A new upload.
    pub fn upload_created(&self, key: &str, upload_id: u64) {
        if self.json {
            self.print(&json!({ "key": key, "upload_id": upload_id }));
        } else {
            say!("{upload_id}");
        }
    }

    /// An uploaded part.
    pub fn part(&self, p: &PartInfo) {
        if self.json {
            self.print(&json!({ "part_number": p.part_number, "size": p.size, "checksum": p.checksum }));
        } else {
            say!("part {}: {} bytes, crc32 {:#010x}", p.part_number, p.size, p.checksum);
        }
    }

    /// Uploaded parts.
    pub fn parts(&self, parts: &[PartInfo]) {
        if self.json {
            let v: Vec<Value> = parts
                .iter()
                .map(|p| json!({ "part_number": p.part_number, "size": p.size, "checksum": p.checksum }))
                .collect();
            self.print(&json!({ "parts": v }));
        } else {
            for p in parts {
                self.part(p);
            }
        }
    }

    /// Uploads in progress.
    pub fn uploads(&self, uploads: &[UploadInfo]) {
        if self.json {
            let v: Vec<Value> = uploads
                .iter()
                .map(|u| json!({ "key": text(&u.key), "upload_id": u.upload_id, "created_ms": u.created_ms, "parts": u.parts }))
                .collect();
            self.print(&json!({ "uploads": v }));
        } else {
            for u in uploads {
                say!("{}\t{}\tparts {}\tcreated_ms {}", text(&u.key), u.upload_id, u.parts, u.created_ms);
            }
        }
    }

    /// Every shard's counters.
    pub fn stats(&self, stats: &[ShardStats]) {
        if self.json {
            let v: Vec<Value> = stats
                .iter()
                .map(|s| {
                    let counters: serde_json::Map<String, Value> =
                        s.counters.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                    json!({ "shard": s.shard, "counters": counters })
                })
                .collect();
            self.print(&json!({ "shards": v }));
        } else {
            for s in stats {
                for (name, value) in &s.counters {
                    say!("shard {}\t{name}\t{value}", s.shard);
                }
            }
        }
    }

    /// The topology.
    pub fn topology(&self, t: &Topology, routing_off: Option<&str>) {
        if self.json {
            self.print(&json!({
                "node_id": t.node_id,
                "shard_count": t.shard_count,
                "ports": t.ports,
                "main_port": t.main_port,
                "placement": t.placement,
                "shard": t.shard,
                "routing": routing_off.is_none(),
            }));
        } else {
            say!("node {}", t.node_id);
            say!("shards {}", t.shard_count);
            say!("main port {}", t.main_port);
            for (s, p) in t.ports.iter().enumerate() {
                say!("shard {s} port {p}");
            }
            say!("placement {}", t.placement);
            match routing_off {
                None => say!("routing on"),
                Some(why) => say!("routing off: {why}"),
            }
        }
    }
}

/// Prints listing pages as they arrive.
pub struct Lister {
    json: bool,
    all: bool,
    first: bool,
    out: std::io::StdoutLock<'static>,
}

impl Lister {
    /// One page.
    ///
    /// # Errors
    /// Writing to stdout failed.
    pub fn page(&mut self, page: &ListPage) -> Result<()> {
        let w = &mut self.out;
        if !self.json {
            for e in &page.entries {
                write!(w, "{}\t{}\t{}", e.key_lossy(), e.size, e.content_type).context("write to stdout")?;
                for (k, v) in &e.user_meta {
                    write!(w, "\t{k}={v}").context("write to stdout")?;
                }
                writeln!(w).context("write to stdout")?;
            }
            if !self.all {
                if let Some(c) = &page.next_start_after {
                    // On stderr, so that stdout stays one key per line.
                    eprintln!("more after: {}", text(c));
                }
            }
            return Ok(());
        }
        if !self.all {
            let v = json!({
                "entries": page.entries.iter().map(entry_json).collect::<Vec<_>>(),
                "next_start_after": page.next_start_after.as_deref().map(text),
            });
            writeln!(w, "{v}").context("write to stdout")?;
            return Ok(());
        }
        for e in &page.entries {
            let sep = if self.first { "{\"entries\":[" } else { "," };
            self.first = false;
            write!(w, "{sep}{}", entry_json(e)).context("write to stdout")?;
        }
        Ok(())
    }

    /// Ends the document.
    ///
    /// # Errors
    /// Writing to stdout failed.
    pub fn finish(mut self) -> Result<()> {
        if self.json && self.all {
            let head = if self.first { "{\"entries\":[" } else { "" };
            writeln!(self.out, "{head}],\"next_start_after\":null}}").context("write to stdout")?;
        }
        self.out.flush().context("write to stdout")
    }
}
