//! Integration tests of proctor-store.
//!
//! Every case in `suite` runs twice: on the filesystem (a temp dir) and on S3 (a fresh bucket
//! of the S3-compatible server on 127.0.0.1:9000, or `PROCTOR_TEST_S3`). The S3 tests need
//! that server: `scripts/setup.sh` installs and starts it, and CI runs it first. Without it
//! they fail, saying so; they are never skipped.

// Every test target of the package shares its dependencies; each uses some.
#![allow(unused_crate_dependencies)]

mod suite;
mod support;

macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod fs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::support::with_fs(crate::suite::$case).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::support::with_s3(crate::suite::$case).await;
                }
            )*
        }
    };
}

on_both_stores!(
    put_get_head_list_delete,
    selectors_are_checked,
    prefix_listing_follows_segments,
    unusual_names_round_trip,
    writes_are_atomic,
    streamed_puts_are_whole_or_nothing,
    ls_and_cat,
    verify_passes_on_a_well_formed_execution,
    verify_catches_a_flipped_byte,
    verify_catches_receipt_copy_problems,
    verify_catches_a_wrong_size_in_the_index,
    verify_catches_missing_and_unlisted_outputs,
    verify_refuses_bad_ids_and_reports_unknown_ones,
    sync_publishes_an_execution,
);

/// What only the filesystem store has: the on-disk layout, temp files, symbolic links.
mod fs_layout {
    use std::fs;
    use std::os::unix::fs::symlink;

    use bytes::Bytes;
    use proctor_store::{ArtifactStore, FsStore, StoreError, open};

    use crate::support::path;

    fn names_in(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn world_paths_are_files_below_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path());
        store
            .put(&path("/artifacts/x/y"), Bytes::from_static(b"xy"))
            .await
            .unwrap();
        assert_eq!(fs::read(dir.path().join("x/y")).unwrap(), b"xy");
        assert_eq!(
            names_in(&dir.path().join("x")),
            ["y"],
            "no temporary file is left behind"
        );

        // What a processor writes under /artifacts is what the store reads.
        fs::create_dir_all(dir.path().join("p/q")).unwrap();
        fs::write(dir.path().join("p/q/r.txt"), b"from a container").unwrap();
        assert_eq!(
            store.get(&path("/artifacts/p/q/r.txt")).await.unwrap(),
            "from a container"
        );

        // The same directory opened by location.
        let by_url = open(&format!("file://{}", dir.path().display())).unwrap();
        let by_path = open(dir.path().to_str().unwrap()).unwrap();
        for other in [by_url, by_path] {
            assert_eq!(other.get(&path("/artifacts/x/y")).await.unwrap(), "xy");
        }
    }

    #[tokio::test]
    async fn writes_in_progress_and_odd_names_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path());
        fs::create_dir_all(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/.proctor-tmp-0123"), b"half").unwrap();
        fs::write(dir.path().join("d/a%2Fb"), b"not canonical").unwrap();
        fs::write(dir.path().join("d/ok"), b"ok").unwrap();
        let listed = store.list(&path("/artifacts/d/")).await.unwrap();
        assert_eq!(
            listed.iter().map(|o| o.path.as_str()).collect::<Vec<_>>(),
            ["/artifacts/d/ok"]
        );
    }

    #[tokio::test]
    async fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path());
        store
            .put(&path("/artifacts/f"), Bytes::from_static(b"file"))
            .await
            .unwrap();
        fs::create_dir_all(dir.path().join("d/target")).unwrap();
        // A directory stands where the file would go: the rename fails.
        let err = store
            .put(&path("/artifacts/d/target"), Bytes::from_static(b"x"))
            .await;
        assert!(
            matches!(
                err,
                Err(StoreError::Io {
                    operation: "put",
                    ..
                })
            ),
            "{err:?}"
        );
        assert_eq!(names_in(&dir.path().join("d")), ["target"]);
        // A file stands where a directory would go.
        let err = store
            .put(&path("/artifacts/f/below"), Bytes::from_static(b"x"))
            .await;
        assert!(err.is_err());
        assert_eq!(names_in(dir.path()), ["d", "f"]);
    }

    #[tokio::test]
    async fn symbolic_links_are_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"host file").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path());
        symlink(outside.path(), dir.path().join("dirlink")).unwrap();
        symlink(outside.path().join("secret"), dir.path().join("filelink")).unwrap();

        for raw in ["/artifacts/dirlink/secret", "/artifacts/filelink"] {
            let err = store.get(&path(raw)).await.unwrap_err();
            assert!(matches!(err, StoreError::NotRegular { .. }), "{raw}: {err}");
        }
        let err = store
            .put(&path("/artifacts/dirlink/planted"), Bytes::new())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotRegular { .. }), "{err}");
        assert!(!outside.path().join("planted").exists());
        assert_eq!(store.list(&path("/artifacts/")).await.unwrap(), vec![]);
        assert!(store.list(&path("/artifacts/dirlink/")).await.is_err());
    }
}

/// What only the S3 store has: the object keys.
mod s3_keys {
    use bytes::Bytes;

    use crate::support::{KEY_PREFIX, TestBucket, path};

    #[tokio::test]
    async fn keys_are_world_paths_without_the_leading_slash() {
        let bucket = TestBucket::create().await;
        let store = bucket.open();
        let put = store
            .put(&path("/artifacts/k/v.txt"), Bytes::from_static(b"value"))
            .await;
        let raw_key = format!("/{}/{KEY_PREFIX}/artifacts/k/v.txt", bucket.name);
        let (status, body) = bucket.signed(http::Method::GET, &raw_key).await;
        let location = store.location();
        bucket.delete().await;
        put.unwrap();
        assert!(status.is_success(), "GET {raw_key}: HTTP {status}");
        assert_eq!(body, "value");
        assert!(location.starts_with("s3://proctor-test-"), "{location}");
    }

    #[tokio::test]
    async fn a_missing_bucket_is_not_a_missing_artifact() {
        let bucket = TestBucket::create().await;
        let store = bucket.open();
        bucket.delete().await;
        let artifact = path("/artifacts/a");
        for err in [
            store.get(&artifact).await.unwrap_err(),
            store.put(&artifact, Bytes::new()).await.unwrap_err(),
            store.list(&path("/artifacts/")).await.unwrap_err(),
            store.delete(&artifact).await.unwrap_err(),
        ] {
            assert!(!err.is_not_found(), "{err}");
            assert!(err.to_string().contains("NoSuchBucket"), "{err}");
        }
    }
}
