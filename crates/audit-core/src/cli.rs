//! Command-line parsing shared by the binaries.

use argh::{EarlyExit, TopLevelCommand};

/// Parses the process arguments like `argh::from_env`, also taking `-h` for `--help`.
pub fn arguments_from_env<T: TopLevelCommand>() -> T {
    let arguments: Vec<String> = std::env::args().collect();
    let command = arguments
        .first()
        .and_then(|path| std::path::Path::new(path).file_name())
        .and_then(|name| name.to_str())
        .unwrap_or("audit");
    let rest: Vec<&str> = arguments
        .iter()
        .skip(1)
        .map(|argument| if argument == "-h" { "--help" } else { argument })
        .collect();
    match T::from_args(&[command], &rest) {
        Ok(parsed) => parsed,
        Err(EarlyExit { output, status }) => match status {
            Ok(()) => {
                println!("{output}");
                std::process::exit(0);
            }
            Err(()) => {
                eprintln!("{output}\nRun {command} --help for more information.");
                std::process::exit(1);
            }
        },
    }
}
