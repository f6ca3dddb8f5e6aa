//! The Hugging Face download path against a local server that answers like the Hub
//! (`HEAD .../resolve/main/FILE` with `X-Repo-Commit`, then `GET .../resolve/COMMIT/FILE`):
//! a whole download lands byte for byte with progress, a cancelled one stops mid-file and
//! leaves nothing, a cut one is refused. One test, because `HF_ENDPOINT` is process-wide.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cnn_explorer::weights::download::{fetch_model, DownloadControl};
use cnn_explorer::weights::find_model;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Whole,
    Trickle,
    Cut,
}

/// A Hub stand-in serving `body` as `timm/vgg16.tv_in1k`'s `model.safetensors`.
fn fake_hub(body: Vec<u8>, mode: Arc<Mutex<Mode>>, requests: Arc<Mutex<Vec<String>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let body = body.clone();
            let mode = *mode.lock().unwrap();
            let requests = requests.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                requests.lock().unwrap().push(format!("{method} {path}"));
                let head = |extra: &str| {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                        body.len()
                    )
                };
                match (method, path) {
                    ("HEAD", "/timm/vgg16.tv_in1k/resolve/main/model.safetensors") => {
                        let extra = format!(
                            "X-Repo-Commit: 0123abcd\r\nETag: \"etag-1\"\r\nX-Linked-Size: {}\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(head(&extra).as_bytes());
                    }
                    ("GET", "/timm/vgg16.tv_in1k/resolve/0123abcd/model.safetensors") => {
                        if stream.write_all(head("").as_bytes()).is_err() {
                            return;
                        }
                        let send = match mode {
                            Mode::Cut => &body[..body.len() / 2],
                            _ => &body[..],
                        };
                        for chunk in send.chunks(4096) {
                            if stream.write_all(chunk).is_err() {
                                return;
                            }
                            if mode == Mode::Trickle {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                        }
                    }
                    _ => {
                        let _ = stream.write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                    }
                }
            });
        }
    });
    url
}

#[test]
fn hugging_face_downloads_stream_are_cancellable_and_checked() {
    let body = std::fs::read(common::fixture("vgg16_tiny_tv.safetensors")).unwrap();
    let mode = Arc::new(Mutex::new(Mode::Whole));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let endpoint = fake_hub(body.clone(), mode.clone(), requests.clone());
    std::env::set_var("HF_ENDPOINT", &endpoint);
    std::env::remove_var("CNN_EXPLORER_WEIGHTS_MIRROR");
    let spec = find_model("vgg16").unwrap();

    // Whole: the bytes arrive as served, with progress up to the total.
    let dir = tempfile::tempdir().unwrap();
    let last = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (last_seen, counted) = (last.clone(), calls.clone());
    let control = DownloadControl {
        progress: Arc::new(move |done, total| {
            assert_eq!(total, Some(body_len()));
            last_seen.store(done, Ordering::SeqCst);
            counted.fetch_add(1, Ordering::SeqCst);
        }),
        ..DownloadControl::default()
    };
    fn body_len() -> u64 {
        std::fs::metadata(common::fixture("vgg16_tiny_tv.safetensors"))
            .unwrap()
            .len()
    }
    let path = fetch_model(spec, dir.path(), &control).expect("the download succeeds");
    assert_eq!(path, dir.path().join("vgg16.safetensors"));
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(last.load(Ordering::SeqCst), body.len() as u64);
    assert!(calls.load(Ordering::SeqCst) >= 1);
    let seen = requests.lock().unwrap().clone();
    assert!(
        seen.contains(&"HEAD /timm/vgg16.tv_in1k/resolve/main/model.safetensors".to_string()),
        "{seen:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no leftovers"
    );

    // Trickle, cancelled part-way: it stops within a chunk and leaves nothing.
    *mode.lock().unwrap() = Mode::Trickle;
    let dir = tempfile::tempdir().unwrap();
    let cancel = Arc::new(AtomicBool::new(false));
    let trigger = cancel.clone();
    let control = DownloadControl {
        progress: Arc::new(move |done, _| {
            if done > 20_000 {
                trigger.store(true, Ordering::SeqCst);
            }
        }),
        cancel: cancel.clone(),
        ..DownloadControl::default()
    };
    let started = Instant::now();
    let err = fetch_model(spec, dir.path(), &control)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cancelled"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the cancel was prompt"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );

    // Cut short by the server: refused, nothing left behind.
    *mode.lock().unwrap() = Mode::Cut;
    let dir = tempfile::tempdir().unwrap();
    let err = fetch_model(spec, dir.path(), &DownloadControl::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("vgg16") && err.contains("save it as"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}
