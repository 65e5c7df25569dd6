//! Generates the tonic client for `iommud.v1.IommuService` from the
//! repository's `proto/` at build time (no generated code is committed).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../../proto").canonicalize()?;
    let proto = proto_root.join("iommud/v1/iommu.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    if std::env::var_os("PROTOC").is_none() {
        // prost-build runs the protoc that PROTOC names.
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_protos(&[proto], &[proto_root])?;
    Ok(())
}
