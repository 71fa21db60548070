//! The checkpoint log: every signed checkpoint appended to a file outside the
//! database (`integrity.checkpoint_log`), so that copies exist beyond a database
//! administrator's reach. The file is the notes one after another; a note ends after
//! its signature lines (each starting with "— "), and a checkpoint body never has an
//! empty line, so the notes can be split without a separator.

use std::io::Write;
use std::path::Path;

const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Appends one signed note and flushes it to disk.
pub fn append(path: &Path, note: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(note.as_bytes())?;
    file.sync_data()
}

/// The notes of a checkpoint log (or of a file holding one checkpoint), in order.
pub fn split_notes(text: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let mut current = String::new();
    let mut in_signatures = false;
    for line in text.split_inclusive('\n') {
        let is_signature = line.starts_with(SIGNATURE_PREFIX);
        if in_signatures && !is_signature {
            notes.push(std::mem::take(&mut current));
            in_signatures = false;
        }
        if line == "\n" && !current.is_empty() {
            in_signatures = true;
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() {
        notes.push(current);
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_notes_split_back_into_the_same_notes() {
        let first = "log\n1\nAAAA\n\n\u{2014} log abc=\n";
        let second = "log\n2\nBBBB\n\n\u{2014} log def=\n\u{2014} witness ghi=\n";
        let directory = std::env::temp_dir().join(format!("checkpoint-log-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("checkpoints");
        let _ = std::fs::remove_file(&path);

        append(&path, first).unwrap();
        append(&path, second).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(split_notes(&text), vec![first, second]);
        assert_eq!(split_notes(first), vec![first]);
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
