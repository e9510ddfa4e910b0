fn main() {
    eprintln!("initd: not built yet");
    std::process::exit(2);
}
