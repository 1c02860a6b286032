//! `candybox-inspect`: offline inspection of a data directory (planned). Today it only says so, so
//! that the crate has a binary of the purpose it is for.

fn main() {
    eprintln!("candybox-inspect: offline inspection of a data directory is planned; nothing to do yet");
    std::process::exit(2);
}
