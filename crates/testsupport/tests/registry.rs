//! The registry guard starts a working docker-registry and stops it.

use std::process::Command;

use berth_testsupport::registry::Registry;

fn curl_status(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn open_and_basic_auth_registries_answer() {
    let open = Registry::start();
    assert_eq!(curl_status(&[&format!("http://{}/v2/", open.addr)]), "200");
    let auth = Registry::start_with_auth("alice", "s3cret");
    let url = format!("http://{}/v2/", auth.addr);
    assert_eq!(curl_status(&[&url]), "401");
    assert_eq!(curl_status(&["-u", "alice:s3cret", &url]), "200");
    assert_eq!(curl_status(&["-u", "alice:wrong", &url]), "401");
}
