//! `berth`: docker's command line. Parsing and output live here; all behaviour is in the library crates.

mod cmd;
mod output;
mod progress;
mod template;

fn main() {
    std::process::exit(cmd::main());
}
