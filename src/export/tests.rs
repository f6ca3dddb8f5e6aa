use std::path::Path;

use super::*;

#[test]
fn the_extension_names_the_format() {
    let of = |p: &str| ExportFormat::of_path(Path::new(p));
    assert_eq!(of("m.onnx").ok(), Some(ExportFormat::Onnx));
    assert_eq!(of("dir/M.ONNX").ok(), Some(ExportFormat::Onnx));
    assert_eq!(of("m.safetensors").ok(), Some(ExportFormat::Safetensors));
    for bad in ["m.pt", "m", "onnx", "m.onnx.tmp"] {
        let err = of(bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(".onnx or a .safetensors"), "{bad}: {err}");
    }
}
