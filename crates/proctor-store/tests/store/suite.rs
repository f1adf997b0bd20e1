//! The behaviour every `ArtifactStore` must have. Each case takes a fresh, empty store;
//! `main.rs` runs every case on the filesystem and on S3.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use proctor_contract::{ErrorCode, OutputsIndex};
use proctor_store::{
    ArtifactStore, ByteStream, Check, FsStore, ObjectInfo, StoreError, VerifyReport, cat, ls,
    sync_execution, verify_execution,
};

use crate::support::{Execution, path, write_execution};

fn info(raw: &str, size_bytes: u64) -> ObjectInfo {
    ObjectInfo {
        path: path(raw),
        size_bytes,
    }
}

fn failures(report: &VerifyReport) -> Vec<&Check> {
    report.failures().collect()
}

pub(crate) async fn put_get_head_list_delete(store: Arc<dyn ArtifactStore>) {
    let a = path("/artifacts/round/a.txt");
    let b = path("/artifacts/round/deep/er/b.bin");
    let empty = path("/artifacts/round/empty");
    store.put(&a, Bytes::from_static(b"alpha")).await.unwrap();
    store.put(&b, Bytes::from(vec![0u8, 255, 7])).await.unwrap();
    store.put(&empty, Bytes::new()).await.unwrap();

    assert_eq!(store.get(&a).await.unwrap(), Bytes::from_static(b"alpha"));
    assert_eq!(store.get(&b).await.unwrap(), Bytes::from(vec![0u8, 255, 7]));
    assert_eq!(store.get(&empty).await.unwrap(), Bytes::new());
    assert_eq!(
        store.head(&a).await.unwrap(),
        info("/artifacts/round/a.txt", 5)
    );
    assert_eq!(
        store.list(&path("/artifacts/round/")).await.unwrap(),
        vec![
            info("/artifacts/round/a.txt", 5),
            info("/artifacts/round/deep/er/b.bin", 3),
            info("/artifacts/round/empty", 0),
        ]
    );

    store
        .put(&a, Bytes::from_static(b"replaced"))
        .await
        .unwrap();
    assert_eq!(
        store.get(&a).await.unwrap(),
        Bytes::from_static(b"replaced")
    );
    assert_eq!(store.head(&a).await.unwrap().size_bytes, 8);

    store.delete(&a).await.unwrap();
    assert!(store.get(&a).await.unwrap_err().is_not_found());
    assert!(store.head(&a).await.unwrap_err().is_not_found());
    store.delete(&a).await.unwrap();
    let missing = path("/artifacts/never/written");
    let err = store.get(&missing).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string().contains("/artifacts/never/written"),
        "{err}"
    );
    assert_eq!(
        store.list(&path("/artifacts/never/")).await.unwrap(),
        vec![]
    );
    assert_eq!(
        store.list(&path("/artifacts/round/")).await.unwrap(),
        vec![
            info("/artifacts/round/deep/er/b.bin", 3),
            info("/artifacts/round/empty", 0)
        ]
    );
}

pub(crate) async fn selectors_are_checked(store: Arc<dyn ArtifactStore>) {
    let kind_mismatch = |err: StoreError| match err {
        StoreError::Path(canon) => assert_eq!(canon.code(), ErrorCode::SelectorKindMismatch),
        other => panic!("expected a selector error, got {other}"),
    };
    kind_mismatch(
        store
            .put(&path("/artifacts/dir/"), Bytes::new())
            .await
            .unwrap_err(),
    );
    kind_mismatch(store.get(&path("/artifacts/dir/")).await.unwrap_err());
    kind_mismatch(store.delete(&path("/artifacts/dir/")).await.unwrap_err());
    kind_mismatch(store.list(&path("/artifacts/dir")).await.unwrap_err());
    let err = store
        .put(&path("/streams/s"), Bytes::new())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::OutsideArtifacts { .. }), "{err}");
    assert_eq!(store.list(&path("/artifacts/")).await.unwrap(), vec![]);
}

pub(crate) async fn prefix_listing_follows_segments(store: Arc<dyn ArtifactStore>) {
    for raw in [
        "/artifacts/a/x",
        "/artifacts/a/y/z",
        "/artifacts/ab",
        "/artifacts/abc/d",
        "/artifacts/a.txt",
    ] {
        store
            .put(&path(raw), Bytes::from_static(b"1"))
            .await
            .unwrap();
    }
    let listed = |raw: &'static str| {
        let store = store.clone();
        async move {
            let found = store.list(&path(raw)).await.unwrap();
            found
                .into_iter()
                .map(|o| o.path.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed("/artifacts/a/").await,
        ["/artifacts/a/x", "/artifacts/a/y/z"]
    );
    assert_eq!(listed("/artifacts/a/y/").await, ["/artifacts/a/y/z"]);
    assert_eq!(listed("/artifacts/abc/").await, ["/artifacts/abc/d"]);
    assert_eq!(
        listed("/artifacts/").await,
        [
            "/artifacts/a.txt",
            "/artifacts/a/x",
            "/artifacts/a/y/z",
            "/artifacts/ab",
            "/artifacts/abc/d"
        ]
    );
    assert_eq!(listed("/artifacts/a/x/").await, Vec::<String>::new());
}

pub(crate) async fn unusual_names_round_trip(store: Arc<dyn ArtifactStore>) {
    let names = [
        "/artifacts/u/café au lait.txt",
        "/artifacts/u/100%25/done",
        "/artifacts/u/a+b=c&d",
    ];
    for raw in names {
        let p = path(raw);
        assert_eq!(p.as_str(), raw, "test names must be canonical");
        store
            .put(&p, Bytes::from(raw.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    let listed: Vec<String> = store
        .list(&path("/artifacts/u/"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path.to_string())
        .collect();
    let mut want: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(listed, want);
    for raw in names {
        assert_eq!(
            store.get(&path(raw)).await.unwrap(),
            Bytes::from(raw.as_bytes().to_vec())
        );
    }
}

/// A stream of `chunks`, then `failure` when one is given.
fn chunked(chunks: Vec<Bytes>, failure: Option<&str>) -> ByteStream {
    let failure = failure.map(|why| StoreError::Io {
        operation: "read",
        path: "the source".to_owned(),
        source: std::io::Error::other(why.to_owned()),
    });
    futures_util::stream::iter(chunks.into_iter().map(Ok).chain(failure.map(Err))).boxed()
}

pub(crate) async fn streamed_puts_are_whole_or_nothing(store: Arc<dyn ArtifactStore>) {
    let target = path("/artifacts/streamed/blob");
    // More than one multipart part (5 MiB) and more than one filesystem write (1 MiB).
    let chunks: Vec<Bytes> = (0u8..7)
        .map(|n| Bytes::from(vec![n; (1 << 20) + usize::from(n)]))
        .collect();
    let whole: Vec<u8> = chunks.iter().flat_map(|chunk| chunk.to_vec()).collect();
    store
        .put_stream(&target, chunked(chunks.clone(), None))
        .await
        .unwrap();
    assert_eq!(
        store.get(&target).await.unwrap(),
        Bytes::from(whole.clone())
    );
    assert_eq!(
        store.head(&target).await.unwrap().size_bytes,
        whole.len() as u64
    );

    // A stream that fails midway replaces nothing and leaves nothing new.
    let err = store
        .put_stream(&target, chunked(chunks.clone(), Some("the file changed")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the file changed"), "{err}");
    assert_eq!(store.get(&target).await.unwrap(), Bytes::from(whole));
    let fresh = path("/artifacts/streamed/fresh");
    store
        .put_stream(&fresh, chunked(chunks, Some("cut short")))
        .await
        .unwrap_err();
    assert!(store.get(&fresh).await.unwrap_err().is_not_found());
    assert_eq!(
        store.list(&path("/artifacts/streamed/")).await.unwrap(),
        vec![info("/artifacts/streamed/blob", 7 * (1 << 20) + 21)]
    );

    let empty = path("/artifacts/streamed/empty");
    store
        .put_stream(&empty, chunked(vec![], None))
        .await
        .unwrap();
    assert_eq!(store.get(&empty).await.unwrap(), Bytes::new());
}

pub(crate) async fn writes_are_atomic(store: Arc<dyn ArtifactStore>) {
    let target = path("/artifacts/atomic/blob");
    let old = Bytes::from(vec![b'o'; 3 << 20]);
    let new = Bytes::from(vec![b'n'; 5 << 20]);
    store.put(&target, old.clone()).await.unwrap();

    // Readers racing a replacement see the old bytes or the new, never a mix or a part.
    let writer = {
        let (store, target, new) = (store.clone(), target.clone(), new.clone());
        tokio::spawn(async move { store.put(&target, new).await })
    };
    while !writer.is_finished() {
        let seen = store.get(&target).await.unwrap();
        assert!(
            seen == old || seen == new,
            "partial object of {} bytes visible",
            seen.len()
        );
        let listed = store.list(&path("/artifacts/atomic/")).await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(
            [old.len(), new.len()].contains(&(listed[0].size_bytes as usize)),
            "{listed:?}"
        );
    }
    writer.await.unwrap().unwrap();
    assert_eq!(store.get(&target).await.unwrap(), new);

    // Readers racing a first write see nothing or everything.
    let fresh = path("/artifacts/atomic/fresh");
    let writer = {
        let (store, fresh, old) = (store.clone(), fresh.clone(), old.clone());
        tokio::spawn(async move { store.put(&fresh, old).await })
    };
    while !writer.is_finished() {
        match store.get(&fresh).await {
            Ok(seen) => assert!(
                seen == old,
                "partial object of {} bytes visible",
                seen.len()
            ),
            Err(err) => assert!(err.is_not_found(), "{err}"),
        }
        for object in store.list(&path("/artifacts/atomic/")).await.unwrap() {
            assert!(
                [old.len(), new.len()].contains(&(object.size_bytes as usize)),
                "{object:?}"
            );
        }
    }
    writer.await.unwrap().unwrap();
    assert_eq!(store.get(&fresh).await.unwrap(), old);
}

pub(crate) async fn ls_and_cat(store: Arc<dyn ArtifactStore>) {
    store
        .put(&path("/artifacts/w/one"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    store
        .put(&path("/artifacts/w/sub/two"), Bytes::from_static(b"22"))
        .await
        .unwrap();
    let all = vec![info("/artifacts/w/one", 1), info("/artifacts/w/sub/two", 2)];
    assert_eq!(ls(&*store, &path("/artifacts/w/")).await.unwrap(), all);
    assert_eq!(ls(&*store, &path("/artifacts/w")).await.unwrap(), all);
    assert_eq!(
        ls(&*store, &path("/artifacts/w/one")).await.unwrap(),
        vec![info("/artifacts/w/one", 1)]
    );
    assert!(
        ls(&*store, &path("/artifacts/nothing"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(
        ls(&*store, &path("/artifacts/nothing/")).await.unwrap(),
        vec![]
    );
    assert_eq!(
        cat(&*store, &path("/artifacts/w/sub/two")).await.unwrap(),
        Bytes::from_static(b"22")
    );
    assert!(
        cat(&*store, &path("/artifacts/w/three"))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

pub(crate) async fn verify_passes_on_a_well_formed_execution(store: Arc<dyn ArtifactStore>) {
    let execution = write_execution(&*store).await;
    let report = verify_execution(&*store, &execution.id).await.unwrap();
    assert!(report.ok(), "{:#?}", report.checks);
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    let outputs: Vec<String> = execution
        .index
        .outputs
        .iter()
        .map(|e| format!("output:{}", e.path))
        .collect();
    let mut want = vec![
        "receipt.execution",
        "receipt.execution_id",
        "index.location",
        "receipt.prefix_copy",
        "index.read",
    ];
    want.extend(outputs.iter().map(String::as_str));
    want.push("outputs.unlisted");
    assert_eq!(names, want);
    assert_eq!(report.receipt.as_ref(), Some(&execution.receipt));
    assert_eq!(report.index.as_ref(), Some(&execution.index));
    assert_eq!(report.store, store.location());
}

pub(crate) async fn verify_catches_a_flipped_byte(store: Arc<dyn ArtifactStore>) {
    let execution = write_execution(&*store).await;
    let output = execution.output("text/normalized.txt");
    let mut bytes = store.get(&output).await.unwrap().to_vec();
    bytes[4] ^= 0x01;
    store.put(&output, bytes.into()).await.unwrap();

    let report = verify_execution(&*store, &execution.id).await.unwrap();
    assert!(!report.ok());
    let failed = failures(&report);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].name, format!("output:{output}"));
    assert!(failed[0].detail.contains("cid b3:"), "{}", failed[0].detail);
    assert!(!failed[0].detail.contains("size"), "{}", failed[0].detail);
}

pub(crate) async fn verify_catches_receipt_copy_problems(store: Arc<dyn ArtifactStore>) {
    let execution = write_execution(&*store).await;
    let copy = execution.prefix.receipt_path();

    store.delete(&copy).await.unwrap();
    let report = verify_execution(&*store, &execution.id).await.unwrap();
    let failed = failures(&report);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].name, "receipt.prefix_copy");
    assert_eq!(failed[0].detail, format!("missing: `{copy}`"));

    let mut altered = execution.receipt.to_bytes();
    altered.push(b'\n');
    store.put(&copy, altered.into()).await.unwrap();
    let report = verify_execution(&*store, &execution.id).await.unwrap();
    let failed = failures(&report);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].name, "receipt.prefix_copy");
    assert!(failed[0].detail.contains("differs"), "{}", failed[0].detail);

    store.delete(&execution.receipt_path()).await.unwrap();
    let report = verify_execution(&*store, &execution.id).await.unwrap();
    assert_eq!(report.checks.len(), 1, "{:#?}", report.checks);
    assert_eq!(report.checks[0].name, "receipt.execution");
    assert!(!report.checks[0].ok);
    assert_eq!(
        report.checks[0].detail,
        format!("missing: `{}`", execution.receipt_path())
    );
    assert!(report.receipt.is_none());
}

pub(crate) async fn verify_catches_a_wrong_size_in_the_index(store: Arc<dyn ArtifactStore>) {
    let execution = write_execution(&*store).await;
    let output = execution.output("stats.json");
    let entries = execution.index.outputs.iter().map(|e| {
        let size = if e.path == output {
            e.size_bytes + 1
        } else {
            e.size_bytes
        };
        (e.path.to_string(), e.cid.clone(), size, e.mime.clone())
    });
    let index = OutputsIndex::build(entries).unwrap();
    store
        .put(&execution.prefix.index_path(), index.to_bytes().into())
        .await
        .unwrap();

    let report = verify_execution(&*store, &execution.id).await.unwrap();
    let failed = failures(&report);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].name, format!("output:{output}"));
    assert_eq!(failed[0].detail, "size 21 bytes, index says 22");
}

pub(crate) async fn verify_catches_missing_and_unlisted_outputs(store: Arc<dyn ArtifactStore>) {
    let execution = write_execution(&*store).await;
    let gone = execution.output("stats.json");
    store.delete(&gone).await.unwrap();
    let stray = execution.output("stray.txt");
    store
        .put(&stray, Bytes::from_static(b"not indexed"))
        .await
        .unwrap();

    let report = verify_execution(&*store, &execution.id).await.unwrap();
    let failed: Vec<(&str, &str)> = failures(&report)
        .into_iter()
        .map(|c| (c.name.as_str(), c.detail.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            (
                format!("output:{gone}").as_str(),
                format!("missing: `{gone}`").as_str()
            ),
            (
                "outputs.unlisted",
                format!("not in the index: `{stray}`").as_str()
            ),
        ]
    );

    store.delete(&execution.prefix.index_path()).await.unwrap();
    let report = verify_execution(&*store, &execution.id).await.unwrap();
    let last = report.checks.last().unwrap();
    assert_eq!((last.name.as_str(), last.ok), ("index.read", false));
}

pub(crate) async fn verify_refuses_bad_ids_and_reports_unknown_ones(store: Arc<dyn ArtifactStore>) {
    for bad in ["", "a/b", ".."] {
        let err = verify_execution(&*store, bad).await.unwrap_err();
        assert!(matches!(err, StoreError::ExecutionId { .. }), "{err}");
    }
    let report = verify_execution(&*store, "unknown-execution")
        .await
        .unwrap();
    assert!(!report.ok());
    assert_eq!(report.checks.len(), 1);
    assert!(report.checks[0].detail.starts_with("missing: "));
}

pub(crate) async fn sync_publishes_an_execution(store: Arc<dyn ArtifactStore>) {
    let source_dir = tempfile::tempdir().unwrap();
    let source = FsStore::new(source_dir.path());
    let execution: Execution = write_execution(&source).await;
    let other = write_execution(&source).await;

    let report = sync_execution(&source, &*store, &execution.id)
        .await
        .unwrap();
    assert_eq!(report.execution_id, execution.id);
    let order: Vec<String> = report.copied.iter().map(|o| o.path.to_string()).collect();
    let n = order.len();
    assert_eq!(n, execution.index.outputs.len() + 3, "{order:#?}");
    assert_eq!(order[n - 3], execution.prefix.index_path().to_string());
    assert_eq!(order[n - 2], execution.prefix.receipt_path().to_string());
    assert_eq!(order[n - 1], execution.receipt_path().to_string());

    let verified = verify_execution(&*store, &execution.id).await.unwrap();
    assert!(verified.ok(), "{:#?}", verified.checks);
    assert_eq!(
        store.get(&execution.receipt_path()).await.unwrap(),
        source.get(&execution.receipt_path()).await.unwrap()
    );
    // Only the execution asked for was copied.
    assert!(store.list(other.prefix.path()).await.unwrap().is_empty());
    assert!(
        sync_execution(&source, &*store, "unknown")
            .await
            .unwrap_err()
            .is_not_found()
    );
}
