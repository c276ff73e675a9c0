use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};

use super::*;

fn new(name: Option<&str>) -> NewContainer {
    NewContainer {
        name: name.map(str::to_string),
        image: "busybox".into(),
        image_id: "sha256:0123".into(),
        config: serde_json::json!({"Cmd": ["sh", "-c", "echo hi"], "Tty": false}),
        labels: BTreeMap::from([("a".to_string(), "b".to_string())]),
        runtime: "berth-runtime".into(),
        restart_policy: "no".into(),
    }
}

fn open() -> (tempfile::TempDir, Records) {
    let dir = tempfile::tempdir().unwrap();
    let r = Records::open(dir.path()).unwrap();
    (dir, r)
}

#[test]
fn create_and_get() {
    let (dir, mut r) = open();
    let c = r.create(&new(Some("web"))).unwrap();
    assert_eq!(c.id.len(), 64);
    assert!(c
        .id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(c.name, "web");
    assert_eq!(c.status, Status::Created);
    assert!(c.created_at > 0);
    for key in [&c.id[..], &c.id[..12], &c.id[..3], "web", "/web"] {
        assert_eq!(r.get(key).unwrap(), c, "{key}");
    }
    // upper-case prefix works too
    assert_eq!(r.get(&c.id[..12].to_ascii_uppercase()).unwrap().id, c.id);
    for key in ["", "nope", "/nope", "zz", "web2"] {
        let e = r.get(key).unwrap_err();
        assert_eq!(e.to_string(), format!("No such container: {key}"));
    }
    // A leading '/' in the given name is not part of the name.
    let d = r.create(&new(Some("/db"))).unwrap();
    assert_eq!(d.name, "db");
    // Survives reopening, config verbatim.
    drop(r);
    let r = Records::open(dir.path()).unwrap();
    let got = r.get("db").unwrap();
    assert_eq!(got, d);
    assert_eq!(got.config["Cmd"][2], "echo hi");
    assert_eq!(got.labels["a"], "b");
}

#[test]
fn ambiguous_prefix() {
    let (_dir, mut r) = open();
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(r.create(&new(None)).unwrap().id);
    }
    // 40 ids over 16 first digits: some first digit is shared.
    let first = ids
        .iter()
        .find(|a| ids.iter().filter(|b| b[..1] == a[..1]).count() > 1)
        .unwrap();
    let e = r.get(&first[..1]).unwrap_err();
    assert!(matches!(e, RecordsError::AmbiguousPrefix(_)), "{e}");
    assert_eq!(
        e.to_string(),
        format!("multiple IDs found with provided prefix: {}", &first[..1])
    );
    assert_eq!(r.get(&first[..20]).unwrap().id, *first);
}

#[test]
fn a_name_wins_over_an_id_prefix() {
    let (_dir, mut r) = open();
    let a = r.create(&new(None)).unwrap();
    let prefix = a.id[..4].to_string();
    let b = r.create(&new(Some(&prefix))).unwrap();
    assert_eq!(r.get(&prefix).unwrap().id, b.id);
    assert_eq!(r.get(&a.id[..5]).unwrap().id, a.id);
}

#[test]
fn generated_names_are_unique() {
    let (_dir, mut r) = open();
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        let c = r.create(&new(None)).unwrap();
        assert!(crate::names::is_valid(&c.name), "{}", c.name);
        assert!(c.name.contains('_'), "{}", c.name);
        assert!(seen.insert(c.name.clone()), "duplicate {}", c.name);
    }
    assert_eq!(r.list(true).unwrap().len(), 200);
}

#[test]
fn name_validation() {
    let (_dir, mut r) = open();
    for bad in ["a", "_web", "-web", "we b", "web/1", "web:1", "//web", "/"] {
        let e = r.create(&new(Some(bad))).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("Invalid container name ({bad}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        );
    }
    assert!(r.list(true).unwrap().is_empty());
    for ok in ["ab", "Web.1", "x-y_z", "0a"] {
        r.create(&new(Some(ok))).unwrap();
    }
}

#[test]
fn name_conflict_message() {
    let (_dir, mut r) = open();
    let c = r.create(&new(Some("web"))).unwrap();
    for again in ["web", "/web"] {
        let e = r.create(&new(Some(again))).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "Conflict. The container name \"/web\" is already in use by container \"{}\". You have to \
                 remove (or rename) that container to be able to reuse that name.",
                c.id
            )
        );
        match e {
            RecordsError::NameInUse { name, id } => {
                assert_eq!(name, "web");
                assert_eq!(id, c.id);
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(r.list(true).unwrap().len(), 1);
}

#[test]
fn list_all_vs_running() {
    let (_dir, mut r) = open();
    let a = r.create(&new(Some("a1"))).unwrap();
    let b = r.create(&new(Some("b1"))).unwrap();
    let c = r.create(&new(Some("c1"))).unwrap();
    let d = r.create(&new(Some("d1"))).unwrap();
    let names = |v: Vec<Container>| v.into_iter().map(|c| c.name).collect::<Vec<_>>();
    assert_eq!(names(r.list(true).unwrap()), ["d1", "c1", "b1", "a1"]);
    assert!(r.list(false).unwrap().is_empty());
    let run = |pid| StateChange::Running {
        pid,
        monitor_pid: Some(pid + 1),
        started_at: now_nanos(),
    };
    r.set_state(&a.id, &run(10)).unwrap();
    r.set_state(&b.id, &run(20)).unwrap();
    r.set_state(&b.id, &StateChange::Paused).unwrap();
    r.set_state(&c.id, &StateChange::Restarting).unwrap();
    r.set_state(&d.id, &run(30)).unwrap();
    r.set_state(
        &d.id,
        &StateChange::Exited {
            exit_code: 0,
            finished_at: now_nanos(),
            oom_killed: false,
        },
    )
    .unwrap();
    assert_eq!(names(r.list(false).unwrap()), ["c1", "b1", "a1"]);
    assert_eq!(r.list(true).unwrap().len(), 4);
}

#[test]
fn state_transitions() {
    let (_dir, mut r) = open();
    let c = r.create(&new(None)).unwrap();
    let id = c.id.clone();
    assert_eq!(
        (
            c.pid,
            c.monitor_pid,
            c.exit_code,
            c.started_at,
            c.finished_at,
            c.restart_count
        ),
        (None, None, None, None, None, 0)
    );

    // created -> paused: refused
    let e = r.set_state(&id, &StateChange::Paused).unwrap_err();
    assert_eq!(e.to_string(), format!("Container {id} is not running"));
    let e = r.set_state(&id, &StateChange::Unpaused).unwrap_err();
    assert_eq!(e.to_string(), format!("Container {id} is not paused"));

    r.set_state(
        &id,
        &StateChange::Running {
            pid: 1234,
            monitor_pid: Some(1233),
            started_at: 111,
        },
    )
    .unwrap();
    let g = r.get(&id).unwrap();
    assert_eq!(g.status, Status::Running);
    assert_eq!(
        (g.pid, g.monitor_pid, g.started_at),
        (Some(1234), Some(1233), Some(111))
    );

    r.set_state(&id, &StateChange::Paused).unwrap();
    assert_eq!(r.get(&id).unwrap().status, Status::Paused);
    r.set_state(&id, &StateChange::Unpaused).unwrap();
    let g = r.get(&id).unwrap();
    assert_eq!((g.status, g.pid), (Status::Running, Some(1234)));

    r.set_state(
        &id,
        &StateChange::Exited {
            exit_code: 137,
            finished_at: 222,
            oom_killed: true,
        },
    )
    .unwrap();
    let g = r.get(&id).unwrap();
    assert_eq!(g.status, Status::Exited);
    assert_eq!(
        (
            g.pid,
            g.monitor_pid,
            g.exit_code,
            g.finished_at,
            g.oom_killed
        ),
        (None, None, Some(137), Some(222), true)
    );
    assert_eq!(g.started_at, Some(111));

    r.set_state(&id, &StateChange::Restarting).unwrap();
    r.set_state(&id, &StateChange::Restarting).unwrap();
    let g = r.get(&id).unwrap();
    assert_eq!((g.status, g.restart_count), (Status::Restarting, 2));

    r.set_state(
        &id,
        &StateChange::Running {
            pid: 99,
            monitor_pid: None,
            started_at: 333,
        },
    )
    .unwrap();
    let g = r.get(&id).unwrap();
    assert_eq!(
        (
            g.status,
            g.pid,
            g.monitor_pid,
            g.exit_code,
            g.oom_killed,
            g.finished_at
        ),
        (Status::Running, Some(99), None, None, false, Some(222))
    );
    assert_eq!(g.restart_count, 2);

    r.set_state(&id, &StateChange::Dead).unwrap();
    let g = r.get(&id).unwrap();
    assert_eq!((g.status, g.pid), (Status::Dead, None));

    let e = r.set_state("f00", &StateChange::Dead).unwrap_err();
    assert_eq!(e.to_string(), "No such container: f00");
    let e = r.set_state("f00", &StateChange::Paused).unwrap_err();
    assert_eq!(e.to_string(), "No such container: f00");
}

#[test]
fn rename() {
    let (_dir, mut r) = open();
    let a = r.create(&new(Some("alpha"))).unwrap();
    let b = r.create(&new(Some("beta"))).unwrap();
    r.rename(&a.id, "/gamma").unwrap();
    assert_eq!(r.get("gamma").unwrap().id, a.id);
    assert!(matches!(
        r.get("alpha"),
        Err(RecordsError::NoSuchContainer(_))
    ));
    // the old name is free again
    r.create(&new(Some("alpha"))).unwrap();

    let e = r.rename(&a.id, "beta").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "Conflict. The container name \"/beta\" is already in use by container \"{}\". You have to remove \
             (or rename) that container to be able to reuse that name.",
            b.id
        )
    );
    assert_eq!(r.get(&a.id).unwrap().name, "gamma");
    assert!(matches!(
        r.rename(&a.id, "gamma"),
        Err(RecordsError::SameName)
    ));
    assert!(matches!(
        r.rename(&a.id, "-x"),
        Err(RecordsError::InvalidName(_))
    ));
    assert!(matches!(
        r.rename("abc", "delta"),
        Err(RecordsError::NoSuchContainer(_))
    ));
}

#[test]
fn remove() {
    let (_dir, mut r) = open();
    let a = r.create(&new(Some("alpha"))).unwrap();
    let b = r.create(&new(Some("beta"))).unwrap();
    r.remove(&a.id).unwrap();
    assert!(matches!(
        r.get(&a.id),
        Err(RecordsError::NoSuchContainer(_))
    ));
    assert!(matches!(
        r.get("alpha"),
        Err(RecordsError::NoSuchContainer(_))
    ));
    assert_eq!(r.list(true).unwrap(), vec![r.get(&b.id).unwrap()]);
    let e = r.remove(&a.id).unwrap_err();
    assert_eq!(e.to_string(), format!("No such container: {}", a.id));
    // the name can be reused
    r.create(&new(Some("alpha"))).unwrap();
}

#[test]
fn volumes() {
    let (dir, mut r) = open();
    let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
    let v = r.create_volume(Some("data"), "local", &labels).unwrap();
    assert_eq!(v.name, "data");
    assert_eq!(v.driver, "local");
    assert_eq!(v.labels, labels);
    assert_eq!(v.mountpoint, dir.path().join("volumes/data/_data"));
    assert!(v.mountpoint.is_dir());
    std::fs::write(v.mountpoint.join("f"), "x").unwrap();

    // The same name again: the existing volume, untouched.
    let again = r
        .create_volume(Some("data"), "local", &BTreeMap::new())
        .unwrap();
    assert_eq!(again, v);
    assert!(v.mountpoint.join("f").exists());

    let anon = r.create_volume(None, "local", &BTreeMap::new()).unwrap();
    assert_eq!(anon.name.len(), 64);
    assert!(anon.mountpoint.is_dir());

    let e = r
        .create_volume(Some("a/b"), "local", &BTreeMap::new())
        .unwrap_err();
    assert!(matches!(e, RecordsError::InvalidVolumeName(_)), "{e}");
    assert!(e
        .to_string()
        .starts_with("\"a/b\" includes invalid characters for a local volume name"));

    assert_eq!(r.volume("data").unwrap(), v);
    let mut names: Vec<_> = r.volumes().unwrap().into_iter().map(|v| v.name).collect();
    names.sort();
    let mut want = vec!["data".to_string(), anon.name.clone()];
    want.sort();
    assert_eq!(names, want);

    assert_eq!(
        r.volume("nope").unwrap_err().to_string(),
        "No such volume: nope"
    );
    assert_eq!(
        r.remove_volume("nope").unwrap_err().to_string(),
        "No such volume: nope"
    );

    r.remove_volume(&anon.name).unwrap();
    assert!(!dir.path().join("volumes").join(&anon.name).exists());
    assert!(matches!(
        r.volume(&anon.name),
        Err(RecordsError::NoSuchVolume(_))
    ));
    assert_eq!(r.volumes().unwrap().len(), 1);
}

#[test]
fn volume_in_use() {
    let (dir, mut r) = open();
    r.create_volume(Some("data"), "local", &BTreeMap::new())
        .unwrap();
    r.create_volume(Some("other"), "local", &BTreeMap::new())
        .unwrap();
    let a = r.create(&new(Some("a1"))).unwrap();
    let b = r.create(&new(Some("b1"))).unwrap();
    r.set_volume_users(&a.id, &["data".to_string(), "other".to_string()])
        .unwrap();
    r.set_volume_users(&b.id, &["data".to_string()]).unwrap();

    let e = r.remove_volume("other").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("remove other: volume is in use - [{}]", a.id)
    );
    let e = r.remove_volume("data").unwrap_err();
    let mut ids = [a.id.clone(), b.id.clone()];
    ids.sort();
    assert_eq!(
        e.to_string(),
        format!("remove data: volume is in use - [{}, {}]", ids[0], ids[1])
    );
    assert_eq!(r.volume_users("data").unwrap(), ids.to_vec());
    assert_eq!(r.volume_users("other").unwrap(), vec![a.id.clone()]);
    assert!(matches!(
        r.volume_users("ghost"),
        Err(RecordsError::NoSuchVolume(_))
    ));
    assert!(dir.path().join("volumes/data/_data").is_dir());

    // Replacing a container's list frees what it no longer uses.
    r.set_volume_users(&a.id, &["data".to_string()]).unwrap();
    r.remove_volume("other").unwrap();

    // Unknown volume or container.
    assert!(matches!(
        r.set_volume_users(&a.id, &["ghost".to_string()]),
        Err(RecordsError::NoSuchVolume(_))
    ));
    assert!(matches!(
        r.set_volume_users("abc", &[]),
        Err(RecordsError::NoSuchContainer(_))
    ));
    // A failed call changed nothing.
    assert!(r.remove_volume("data").is_err());

    // Removing the containers frees the volume.
    r.remove(&a.id).unwrap();
    let e = r.remove_volume("data").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("remove data: volume is in use - [{}]", b.id)
    );
    r.remove(&b.id).unwrap();
    assert!(r.volume_users("data").unwrap().is_empty());
    r.remove_volume("data").unwrap();
    assert!(!dir.path().join("volumes/data").exists());
}

#[test]
fn concurrent_processes() {
    const THREADS: usize = 8;
    const EACH: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let root = Arc::new(dir.path().to_path_buf());
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let root = Arc::clone(&root);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                // Everyone opens (and creates the schema) at once, too.
                barrier.wait();
                let mut r = Records::open(&root).unwrap();
                let mut won = 0;
                let mut lost = Vec::new();
                for i in 0..EACH {
                    let name = if t < 4 && i == EACH / 2 {
                        "contested".to_string()
                    } else if i % 2 == 0 {
                        format!("t{t}-c{i}")
                    } else {
                        String::new()
                    };
                    let opts = new((!name.is_empty()).then_some(name.as_str()));
                    match r.create(&opts) {
                        Ok(c) => {
                            let c2 = r.get(&c.id).unwrap();
                            assert_eq!(c2.name, c.name);
                            won += 1;
                        }
                        Err(RecordsError::NameInUse { name, id }) => {
                            assert_eq!(name, "contested");
                            lost.push(id);
                        }
                        Err(e) => panic!("thread {t}: {e}"),
                    }
                }
                (won, lost)
            })
        })
        .collect();
    let mut won = 0;
    let mut lost = Vec::new();
    for h in handles {
        let (w, l) = h.join().unwrap();
        won += w;
        lost.extend(l);
    }
    assert_eq!(lost.len(), 3, "exactly one of four gets the contested name");
    assert_eq!(won, THREADS * EACH - 3);
    let r = Records::open(&root).unwrap();
    let all = r.list(true).unwrap();
    assert_eq!(all.len(), THREADS * EACH - 3);
    let winner = r.get("contested").unwrap();
    assert!(lost.iter().all(|id| *id == winner.id));
    let names: BTreeSet<_> = all.iter().map(|c| &c.name).collect();
    assert_eq!(names.len(), all.len());
}
