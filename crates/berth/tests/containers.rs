//! The container lifecycle through the berth binary: real containers (berth-runtime, overlay rootfs, the
//! monitor) in a private store per test.

mod common;

use common::*;

#[test]
fn run_passes_output_and_exit_code_through() {
    let env = Env::new();
    env.load_busybox();
    let o = env.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
    assert!(
        env.containers().is_empty(),
        "--rm left {:?}",
        env.containers()
    );
}
