//! berth-runtime behind containerd's CRI plugin, as a Kubernetes node would use it: a RuntimeClass handler
//! `berth` (runtime type io.containerd.runc.v2, BinaryName = berth-runtime). The test plays the kubelet: a CRI
//! v1 client (k8s-cri's tonic stubs) on containerd's socket creates a pod sandbox and a container in it,
//! starts it, execs into it, stops and removes both. The pod uses the node's network (no CNI plugins here).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use serde_json::Value;
use testsupport::daemons::{cgroup_dirs, Containerd, Cri};
use testsupport::images::{ImageBuilder, Layout};
use tonic::transport::{Channel, Endpoint, Uri};

const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");
const IMAGE: &str = "docker.io/library/busybox:latest";
const PAUSE: &str = "registry.berth.test/pause:1";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

async fn channel(socket: PathBuf) -> Channel {
    Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("connect to containerd's CRI socket")
}

/// containerd with the CRI plugin, the `berth` handler, and the busybox and "pause" images in `k8s.io`.
fn containerd() -> Containerd {
    let c = Containerd::start(Some(&Cri {
        sandbox_image: PAUSE.into(),
        // As on a node: runc stays the default, berth is the handler a RuntimeClass names.
        handlers: vec![
            ("runc".into(), PathBuf::from("/usr/sbin/runc")),
            ("berth".into(), PathBuf::from(BIN)),
        ],
    }));
    let layout = Layout::new();
    layout.add("busybox", ImageBuilder::busybox());
    // The sandbox only has to sit there, as pause does.
    layout.add(
        "pause",
        ImageBuilder::busybox().cmd(["/bin/sleep", "2147483647"]),
    );
    for (tag, name) in [("busybox", IMAGE), ("pause", PAUSE)] {
        let archive = c.dir.path().join(format!("{tag}.tar"));
        layout.to_docker_archive(tag, &archive, name);
        c.ctr_ok("k8s.io", &["images", "import", archive.to_str().unwrap()]);
    }
    c
}

fn host_network() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn berth_state(c: &Containerd, id: &str) -> PathBuf {
    c.ns_path(&format!("/run/containerd/runc/k8s.io/{id}/state.json"))
}

fn assert_berth_runs(c: &Containerd, id: &str) {
    let text = std::fs::read_to_string(berth_state(c, id))
        .unwrap_or_else(|e| panic!("runtime state of {id}: {e}\n{}", c.log()));
    let state: Value = serde_json::from_str(&text).unwrap();
    assert!(
        state["cgroup"]["hierarchies"].is_array(),
        "not berth-runtime's state: {state}"
    );
}

#[test]
fn pod_sandbox_and_container_through_the_cri() {
    let c = containerd();
    let logs = c.dir.path().join("pod-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let socket = c.socket.clone();
    let cgroup_parent = c.cgroup_parent.clone();
    let log = c.log();
    let (sandbox_id, container_id) = block_on(async {
        let ch = channel(socket).await;
        let mut rt = RuntimeServiceClient::new(ch.clone());
        let mut images = ImageServiceClient::new(ch);

        let v = rt
            .version(VersionRequest::default())
            .await
            .unwrap_or_else(|e| panic!("Version: {e}\n{log}"))
            .into_inner();
        assert_eq!(v.runtime_name, "containerd");
        let status = rt
            .status(StatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        let conditions = status.status.unwrap().conditions;
        assert!(
            conditions
                .iter()
                .any(|c| c.r#type == "RuntimeReady" && c.status),
            "{conditions:?}"
        );
        let listed = images
            .list_images(ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(
            listed
                .images
                .iter()
                .any(|i| i.repo_tags.iter().any(|t| t == IMAGE)),
            "{:?}",
            listed.images
        );

        let sandbox_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "pod".into(),
                uid: "uid-1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            // No hostname: the kubelet sets none for a pod on the node's network (no UTS namespace of its own;
            // runc and berth-runtime refuse a hostname without one).
            hostname: String::new(),
            log_directory: logs.display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(host_network()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sandbox_id = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: "berth".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"))
            .into_inner()
            .pod_sandbox_id;
        let s = rt
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: sandbox_id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(s.state, PodSandboxState::SandboxReady as i32);
        assert_eq!(s.runtime_handler, "berth");

        let container_id = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox_id.clone(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: "app".into(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: IMAGE.into(),
                        ..Default::default()
                    }),
                    command: vec!["sh".into(), "-c".into()],
                    args: vec!["echo started; exec sleep 1000".into()],
                    envs: vec![KeyValue {
                        key: "GREETING".into(),
                        value: "hello".into(),
                    }],
                    log_path: "app.log".into(),
                    linux: Some(LinuxContainerConfig {
                        security_context: Some(LinuxContainerSecurityContext {
                            namespace_options: Some(host_network()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e}"))
            .into_inner()
            .container_id;
        rt.start_container(StartContainerRequest {
            container_id: container_id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("StartContainer: {e}"));
        let st = container_status(&mut rt, &container_id).await;
        assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
        (sandbox_id, container_id)
    });

    // Both the sandbox and the container run under berth-runtime (the handler's BinaryName).
    assert_berth_runs(&c, &sandbox_id);
    assert_berth_runs(&c, &container_id);

    let socket = c.socket.clone();
    block_on(async {
        let mut rt = RuntimeServiceClient::new(channel(socket).await);
        // ExecSync: output, exit code, the container's environment, its pid namespace.
        let r = rt
            .exec_sync(ExecSyncRequest {
                container_id: container_id.clone(),
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo $GREETING; cat /proc/1/comm; exit 3".into(),
                ],
                timeout: 10,
            })
            .await
            .unwrap_or_else(|e| panic!("ExecSync: {e}"))
            .into_inner();
        assert_eq!(
            (r.exit_code, String::from_utf8_lossy(&r.stdout).as_ref()),
            (3, "hello\nsleep\n"),
            "stderr: {}",
            String::from_utf8_lossy(&r.stderr)
        );

        // StopContainer: SIGTERM, then SIGKILL after the timeout (sleep as pid 1 ignores SIGTERM).
        rt.stop_container(StopContainerRequest {
            container_id: container_id.clone(),
            timeout: 1,
        })
        .await
        .unwrap_or_else(|e| panic!("StopContainer: {e}"));
        let st = container_status(&mut rt, &container_id).await;
        assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
        assert_eq!(st.exit_code, 137);
        rt.remove_container(RemoveContainerRequest {
            container_id: container_id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("RemoveContainer: {e}"));
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: sandbox_id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}"));
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: sandbox_id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}"));
        let left = rt
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert!(left.is_empty(), "{left:?}");
        let left = rt
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        assert!(left.is_empty(), "{left:?}");
    });

    // The container's log went through the shim to the kubelet's path.
    let log = std::fs::read_to_string(logs.join("app.log")).unwrap_or_default();
    assert!(log.contains("stdout F started"), "{log}");

    // Nothing left: runtime state, cgroups (the parent too: berth-runtime removes an empty relative parent).
    for id in [&sandbox_id, &container_id] {
        assert!(!berth_state(&c, id).exists(), "runtime state of {id} left");
    }
    for d in cgroup_dirs(&c.cgroup_parent) {
        assert!(!d.exists(), "cgroup {} left", d.display());
    }
    assert!(Path::new(BIN).exists());
}

async fn container_status(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> ContainerStatus {
    // The CRI plugin records a container's exit asynchronously (from the shim's event).
    for _ in 0..100 {
        let st = rt
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if st.state != ContainerState::ContainerCreated as i32 || st.started_at == 0 {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("container {id} never left CREATED");
}
