//! Progress bars for transfers: only on a terminal stderr, only past 4 MiB.

use std::cell::{Cell, RefCell};
use std::io::IsTerminal;

use bytes::Bytes;
use candybox_wire::client::BodySource;
use indicatif::{ProgressBar, ProgressStyle};

/// Transfers up to this size show no bar.
const PROGRESS_BYTES_MIN: u64 = 4 * 1024 * 1024;

/// A transfer's progress: a bar when it is worth one, else nothing.
pub struct Progress {
    bar: RefCell<Option<ProgressBar>>,
    size: Option<u64>,
    done: Cell<u64>,
    enabled: bool,
    what: String,
}

impl Progress {
    /// Progress of a transfer of `size` bytes (unknown: a bar appears once 4 MiB have passed).
    pub fn new(size: Option<u64>, what: &str) -> Progress {
        let enabled = std::io::stderr().is_terminal();
        let p = Progress { bar: RefCell::new(None), size, done: Cell::new(0), enabled, what: what.to_owned() };
        if size.is_some_and(|s| s > PROGRESS_BYTES_MIN) {
            p.show();
        }
        p
    }

    fn show(&self) {
        if !self.enabled || self.bar.borrow().is_some() {
            return;
        }
        let bar = match self.size {
            Some(size) => ProgressBar::new(size).with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(self.what.clone());
        bar.set_position(self.done.get());
        *self.bar.borrow_mut() = Some(bar);
    }

    /// `n` more bytes went through.
    pub fn add(&self, n: u64) {
        self.done.set(self.done.get() + n);
        if self.done.get() > PROGRESS_BYTES_MIN {
            self.show();
        }
        if let Some(bar) = self.bar.borrow().as_ref() {
            bar.set_position(self.done.get());
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}

/// A body source that reports each piece to a [`Progress`].
pub struct Counted<'a, S> {
    source: S,
    progress: &'a Progress,
}

impl<'a, S> Counted<'a, S> {
    /// Counts `source`'s pieces into `progress`.
    pub fn new(source: S, progress: &'a Progress) -> Self {
        Counted { source, progress }
    }
}

impl<S: BodySource> BodySource for Counted<'_, S> {
    async fn next_piece(&mut self) -> std::io::Result<Option<Bytes>> {
        let piece = self.source.next_piece().await?;
        if let Some(p) = &piece {
            self.progress.add(p.len() as u64);
        }
        Ok(piece)
    }
}
