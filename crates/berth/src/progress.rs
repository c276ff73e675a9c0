//! Pull progress: one bar per layer on a terminal (downloaded bytes, then "Pull complete"), plain status
//! lines otherwise, nothing with -q.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use image::pull::Progress;
use image::reference::Reference;
use image::{Descriptor, Digest};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub enum Mode {
    Bars,
    Lines,
    Quiet,
}

pub struct PullProgress {
    mode: Mode,
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

impl PullProgress {
    pub fn new(mode: Mode) -> PullProgress {
        let multi = MultiProgress::with_draw_target(match mode {
            Mode::Bars => ProgressDrawTarget::stdout(),
            _ => ProgressDrawTarget::hidden(),
        });
        PullProgress {
            mode,
            multi,
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, s: &str) {
        if let Mode::Lines = self.mode {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{s}");
        }
    }

    /// Push side: bars for the blobs about to go, then the same updates as a pull's.
    pub fn push_event(&self, d: &Descriptor, e: image::push::BlobEvent) {
        use image::push::BlobEvent;
        match e {
            BlobEvent::Exists => self.finish_msg(d, "Layer already exists".into()),
            BlobEvent::Mounted(from) => self.finish_msg(d, format!("Mounted from {from}")),
            BlobEvent::Pushing => {
                if let Mode::Bars = self.mode {
                    self.add_bars(std::slice::from_ref(d), "Pushing");
                }
            }
            BlobEvent::Sent(n) => self.layer_bytes(d, n),
            BlobEvent::Pushed => self.finish_msg(d, "Pushed".into()),
        }
    }

    fn add_bars(&self, layers: &[Descriptor], msg: &'static str) {
        let style =
            ProgressStyle::with_template("{prefix}: {msg} [{bar:40}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let mut bars = match self.bars.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        for l in layers {
            let b = self.multi.add(ProgressBar::new(l.size));
            b.set_style(style.clone());
            b.set_prefix(short(&l.digest));
            b.set_message(msg);
            bars.insert(l.digest.clone(), b);
        }
    }

    fn finish_msg(&self, layer: &Descriptor, msg: String) {
        match self.mode {
            Mode::Bars => {
                let bar = self
                    .bars
                    .lock()
                    .ok()
                    .and_then(|b| b.get(&layer.digest).cloned());
                let bar = bar.unwrap_or_else(|| {
                    let b = self.multi.add(ProgressBar::new(0));
                    b.set_prefix(short(&layer.digest));
                    b
                });
                bar.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.finish_with_message(msg);
            }
            Mode::Lines => self.line(&format!("{}: {msg}", short(&layer.digest))),
            Mode::Quiet => {}
        }
    }

    fn finish(&self, layer: &Descriptor, msg: &'static str) {
        self.finish_msg(layer, msg.into());
    }
}

impl Progress for PullProgress {
    fn resolved(&self, _reference: &Reference, layers: &[Descriptor]) {
        if let Mode::Bars = self.mode {
            self.add_bars(layers, "Waiting");
        }
    }

    fn layer_exists(&self, layer: &Descriptor) {
        self.finish(layer, "Already exists");
    }

    fn layer_bytes(&self, layer: &Descriptor, downloaded: u64) {
        if let Mode::Bars = self.mode {
            if let Some(b) = self
                .bars
                .lock()
                .ok()
                .and_then(|b| b.get(&layer.digest).cloned())
            {
                if b.position() == 0 && b.message() == "Waiting" {
                    b.set_message("Downloading");
                }
                b.set_position(downloaded);
            }
        }
    }

    fn layer_done(&self, layer: &Descriptor) {
        self.finish(layer, "Pull complete");
    }
}
