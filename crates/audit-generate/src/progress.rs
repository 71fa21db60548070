//! Progress: a bar on a terminal, plain periodic lines otherwise (logs, CI).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often plain progress lines are printed.
const LINE_INTERVAL: Duration = Duration::from_secs(5);

pub struct Progress {
    bar: Option<ProgressBar>,
    label: &'static str,
    total: Option<u64>,
    last_line: Instant,
}

impl Progress {
    /// `total` is known for counted runs and unknown for timed ones.
    pub fn new(label: &'static str, total: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(total) => ProgressBar::new(total),
                None => ProgressBar::new_spinner(),
            };
            let template = "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} {msg} ({per_sec})";
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label);
            bar
        });
        Self {
            bar,
            label,
            total,
            last_line: Instant::now(),
        }
    }

    pub fn set_position(&mut self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
            return;
        }
        if self.last_line.elapsed() >= LINE_INTERVAL {
            self.last_line = Instant::now();
            match self.total {
                Some(total) => eprintln!("{}: {position} of {total}", self.label),
                None => eprintln!("{}: {position}", self.label),
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
