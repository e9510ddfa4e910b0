//! Test support for the unit tests of the probe client's users: a server on
//! 127.0.0.1 that answers successive connections with given bytes, after
//! reading each request's head, and keeps the heads it read.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// The port of a server answering the n-th connection with `answers[n]`
/// (sent as they are: a test writes whole or broken HTTP answers), and the
/// request heads it has read so far.
pub(crate) fn answering_server(answers: Vec<String>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for answer in answers {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    (port, seen)
}
