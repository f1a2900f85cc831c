//! The store and the import, in process, on images built here byte by byte (what skopeo and
//! distribution write is covered against the real tools in tests/tests/registry.rs).

use super::*;
use std::collections::BTreeMap;

/// A blob: its digest and bytes.
fn blob(bytes: &[u8]) -> (Digest, Vec<u8>) {
    (Digest::of(bytes), bytes.to_vec())
}

/// An image: config, layers, the manifest naming them (OCI), every blob by digest.
struct Image {
    manifest: (Digest, Vec<u8>),
    blobs: BTreeMap<Digest, Vec<u8>>,
}

fn image(layers: &[&[u8]], media_type: &str) -> Image {
    let config = blob(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}"#);
    let layers: Vec<_> = layers.iter().map(|l| blob(l)).collect();
    let descriptor = |(d, b): &(Digest, Vec<u8>), t: &str| serde_json::json!({ "mediaType": t, "digest": d.to_string(), "size": b.len() });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(&config, "application/vnd.oci.image.config.v1+json"),
        "layers": layers.iter().map(|l| descriptor(l, "application/vnd.oci.image.layer.v1.tar+gzip")).collect::<Vec<_>>(),
    });
    let manifest = blob(manifest.to_string().as_bytes());
    let mut blobs: BTreeMap<Digest, Vec<u8>> = layers.into_iter().collect();
    blobs.insert(config.0, config.1);
    blobs.insert(manifest.0.clone(), manifest.1.clone());
    Image { manifest, blobs }
}

/// Writes an OCI image layout of `images` (tag → image) to `dir`.
fn layout(dir: &Path, images: &[(&str, &Image)]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut manifests = Vec::new();
    for (tag, image) in images {
        for (digest, bytes) in &image.blobs {
            std::fs::write(dir.join("blobs/sha256").join(digest.hex()), bytes).unwrap();
        }
        manifests.push(serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": image.manifest.0.to_string(),
            "size": image.manifest.1.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }));
    }
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": manifests });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

/// Writes a distribution 2.x storage directory of `images` ((name, tag) → image) below `dir`,
/// in its layout (docs/storage-drivers and registry/storage/paths.go of distribution).
fn distribution(dir: &Path, images: &[(&str, &str, &Image)]) {
    let v2 = dir.join("docker/registry/v2");
    for (name, tag, image) in images {
        let repository = v2.join("repositories").join(name);
        for (digest, bytes) in &image.blobs {
            let data = v2
                .join("blobs/sha256")
                .join(&digest.hex()[..2])
                .join(digest.hex());
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(data.join("data"), bytes).unwrap();
            let link = repository.join("_layers/sha256").join(digest.hex());
            std::fs::create_dir_all(&link).unwrap();
            std::fs::write(link.join("link"), digest.to_string()).unwrap();
        }
        let current = repository.join("_manifests/tags").join(tag).join("current");
        std::fs::create_dir_all(&current).unwrap();
        std::fs::write(current.join("link"), image.manifest.0.to_string()).unwrap();
    }
}

fn name(text: &str) -> Name {
    Name::parse(text).unwrap()
}

#[test]
fn an_oci_layout_imports_and_every_part_is_found_under_its_repository() {
    let state = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    let shared: &[u8] = b"a layer two images share";
    let one = image(&[shared, b"one's own layer"], OCI_MANIFEST);
    let two = image(&[shared], OCI_MANIFEST);
    layout(source.path(), &[("1.0", &one), ("2.0", &two)]);
    let registry = Registry::open(state.path()).unwrap();
    let repo = name("osism/kolla/nova-api");
    let imported = import(&registry, source.path(), Some(&repo)).unwrap();
    assert_eq!(
        imported.images,
        ["osism/kolla/nova-api:1.0", "osism/kolla/nova-api:2.0"]
    );
    // The config and the shared layer are stored once.
    let distinct: std::collections::BTreeSet<&Digest> =
        one.blobs.keys().chain(two.blobs.keys()).collect();
    assert_eq!(imported.blobs_added, distinct.len());
    assert_eq!(registry.tags(&repo).unwrap(), ["1.0", "2.0"]);
    let found = registry
        .manifest(&repo, &Reference::Tag("1.0".into()))
        .unwrap();
    assert_eq!(found.digest, one.manifest.0);
    assert_eq!(found.media_type, OCI_MANIFEST);
    assert_eq!(std::fs::read(&found.path).unwrap(), one.manifest.1);
    for digest in one.blobs.keys() {
        let path = registry.root().join(registry.blob(&repo, digest).unwrap());
        assert_eq!(&std::fs::read(path).unwrap(), &one.blobs[digest]);
    }
    // Another repository does not see this one's blobs, nor an unknown tag.
    let other = name("other");
    assert!(matches!(
        registry.blob(&other, &one.manifest.0),
        Err(RegistryError::BlobUnknown { .. })
    ));
    assert!(matches!(
        registry.tags(&other),
        Err(RegistryError::NameUnknown(_))
    ));
    assert!(matches!(
        registry.manifest(&repo, &Reference::Tag("3.0".into())),
        Err(RegistryError::ManifestUnknown { .. })
    ));
    assert_eq!(registry.repositories(), std::slice::from_ref(&repo));
    // Again: nothing new.
    let again = import(&registry, source.path(), Some(&repo)).unwrap();
    assert_eq!(again.blobs_added, 0);
    // An OCI layout without a repository name is refused, saying why.
    let e = import(&registry, source.path(), None).unwrap_err();
    assert!(e.to_string().contains("--name"), "{e}");
}

#[test]
fn a_corrupt_blob_is_refused_by_digest_and_leaves_no_tag() {
    let state = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    let one = image(&[b"the layer"], OCI_MANIFEST);
    layout(source.path(), &[("1.0", &one)]);
    let (layer, _) = blob(b"the layer");
    std::fs::write(
        source.path().join("blobs/sha256").join(layer.hex()),
        b"the layeR",
    )
    .unwrap();
    let registry = Registry::open(state.path()).unwrap();
    let repo = name("x");
    let e = import(&registry, source.path(), Some(&repo)).unwrap_err();
    assert!(
        matches!(&e, RegistryError::Corrupt { digest, .. } if *digest == layer.to_string()),
        "{e}"
    );
    assert!(e.to_string().contains(&layer.to_string()), "{e}");
    assert!(
        registry
            .manifest(&repo, &Reference::Tag("1.0".into()))
            .is_err()
    );
    assert!(registry.tags(&repo).map_or(true, |t| t.is_empty()));
    // A missing blob is named too.
    std::fs::remove_file(source.path().join("blobs/sha256").join(layer.hex())).unwrap();
    let e = import(&registry, source.path(), Some(&repo)).unwrap_err();
    assert!(
        e.to_string().contains(&layer.to_string()) && e.to_string().contains("missing"),
        "{e}"
    );
}

/// A distribution storage directory as a tarball, compressed by `compress`.
fn tarball(dir: &Path, out: &Path, compress: fn(Vec<u8>) -> Vec<u8>) {
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_dir_all(".", dir).unwrap();
    let bytes = builder.into_inner().unwrap();
    std::fs::write(out, compress(bytes)).unwrap();
}

#[test]
fn a_distribution_storage_imports_unpacked_and_as_every_tarball() {
    use std::io::Write;
    let source = tempfile::tempdir().unwrap();
    let shared: &[u8] = b"shared base layer";
    let nova = image(&[shared, b"nova"], DOCKER_MANIFEST);
    let glance = image(&[shared, b"glance"], DOCKER_MANIFEST);
    distribution(
        source.path(),
        &[
            ("osism/kolla/nova-api", "2024.2", &nova),
            ("osism/kolla/glance-api", "2024.2", &glance),
            ("osism/kolla/glance-api", "latest", &glance),
        ],
    );
    let gzip = |bytes: Vec<u8>| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&bytes).unwrap();
        e.finish().unwrap()
    };
    let bzip = |bytes: Vec<u8>| {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(&bytes).unwrap();
        e.finish().unwrap()
    };
    let zstd = |bytes: Vec<u8>| {
        ruzstd::encoding::compress_to_vec(&bytes[..], ruzstd::encoding::CompressionLevel::Fastest)
    };
    let plain = |bytes: Vec<u8>| bytes;
    let bundles = tempfile::tempdir().unwrap();
    let mut sources = vec![source.path().to_path_buf()];
    for (file, compress) in [
        ("registry.tar", plain as fn(Vec<u8>) -> Vec<u8>),
        ("registry.tar.gz", gzip),
        ("registry.tar.bz2", bzip),
        ("registry.tar.zst", zstd),
    ] {
        let out = bundles.path().join(file);
        tarball(source.path(), &out, compress);
        sources.push(out);
    }
    for from in sources {
        let state = tempfile::tempdir().unwrap();
        let registry = Registry::open(state.path()).unwrap();
        let imported =
            import(&registry, &from, None).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        assert_eq!(
            imported.images,
            [
                "osism/kolla/glance-api:2024.2",
                "osism/kolla/glance-api:latest",
                "osism/kolla/nova-api:2024.2"
            ],
            "{}",
            from.display()
        );
        assert_eq!(
            registry.repositories(),
            [name("osism/kolla/glance-api"), name("osism/kolla/nova-api")]
        );
        let found = registry
            .manifest(
                &name("osism/kolla/nova-api"),
                &Reference::Tag("2024.2".into()),
            )
            .unwrap();
        assert_eq!(found.media_type, DOCKER_MANIFEST);
        let (base, _) = blob(shared);
        assert!(
            registry
                .blob(&name("osism/kolla/glance-api"), &base)
                .is_ok()
        );
        // Two manifests, two own layers, the shared base and the shared config.
        let stored = std::fs::read_dir(state.path().join("registry/blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(stored, 6, "{}", from.display());
    }
}

#[test]
fn removing_a_repository_frees_the_blobs_only_it_used() {
    let state = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    let shared: &[u8] = b"shared";
    let a = image(&[shared, b"a only"], OCI_MANIFEST);
    let b = image(&[shared, b"b only"], OCI_MANIFEST);
    distribution(source.path(), &[("a", "1", &a), ("b/c", "1", &b)]);
    let registry = Registry::open(state.path()).unwrap();
    import(&registry, source.path(), None).unwrap();
    // a's manifest and its own layer go; the shared layer and config stay for b/c.
    assert_eq!(registry.remove(&name("a"), None).unwrap(), 2);
    assert_eq!(registry.repositories(), [name("b/c")]);
    let (kept, _) = blob(shared);
    assert!(registry.blob(&name("b/c"), &kept).is_ok());
    assert!(matches!(
        registry.remove(&name("a"), None),
        Err(RegistryError::NameUnknown(_))
    ));
    registry.remove(&name("b/c"), Some("1")).unwrap();
    assert!(registry.tags(&name("b/c")).unwrap().is_empty());
}
