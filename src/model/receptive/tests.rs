use candle_core::{DType, Device, Tensor};

use super::*;
use crate::model::{Arch, Backbone};
use crate::weights::loading::{random_backbone, zero_backbone};

fn fields(arch: Arch, side: usize) -> Vec<(String, ReceptiveField)> {
    let backbone = zero_backbone(arch, &Device::Cpu).unwrap();
    receptive_fields(backbone.network(), side).unwrap()
}

fn field(all: &[(String, ReceptiveField)], tap: &str) -> ReceptiveField {
    field_of(all, tap).unwrap_or_else(|| panic!("no tap {tap}"))
}

#[test]
fn vgg16_has_the_published_receptive_fields() {
    // Araujo et al., "Computing receptive fields of convolutional neural networks" (Distill,
    // 2019) and the usual table: conv1_1 3, conv1_2 5, pool1 6, pool2 16, conv3_3 40, pool3
    // 44, conv4_3 92, pool4 100, conv5_3 196, pool5 212 pixels.
    let all = fields(Arch::Vgg16, 224);
    for (tap, size, stride, cells) in [
        ("conv1_1", 3, 1, 224),
        ("conv1_2", 5, 1, 224),
        ("pool1", 6, 2, 112),
        ("pool2", 16, 4, 56),
        ("conv3_3", 40, 4, 56),
        ("pool3", 44, 8, 28),
        ("conv4_3", 92, 8, 28),
        ("pool4", 100, 16, 14),
        ("conv5_3", 196, 16, 14),
        ("pool5", 212, 32, 7),
    ] {
        let f = field(&all, tap);
        assert_eq!((f.size, f.stride, f.cells), (size, stride, cells), "{tap}");
        assert!(!f.global);
    }
    // Padding 1 per 3x3 convolution: conv1_1's first window starts a pixel before the image.
    assert_eq!(field(&all, "conv1_1").offset, -1);
    assert_eq!(field(&all, "conv5_3").offset, -90);
    // The fc layers see a window as wide as pool5's map.
    assert_eq!(field(&all, "fc6").cells, 1);
}

#[test]
fn resnets_have_the_textbook_receptive_fields() {
    // torchvision's ResNets (the stride on the 3x3 convolution, "v1.5"), worked out by hand:
    // the stem 7 px at stride 2, the max-pool 3x3/2 -> 11 px at stride 4; every 3x3
    // convolution then adds 2 x the stride it runs at, a stage's first one doubling the
    // stride after it. ResNet-50 (one 3x3 per bottleneck, 3-4-6-3 blocks): 35, 91, 267, 427;
    // ResNet-18 (two per basic block, 2-2-2-2): 43, 99, 211, 435, the values usually quoted.
    let r50 = fields(Arch::ResNet50, 224);
    for (tap, size, stride) in [
        ("stem", 7, 2),
        ("pool", 11, 4),
        ("layer1.2", 35, 4),
        ("layer2.3", 91, 8),
        ("layer3.5", 267, 16),
        ("layer4.2", 427, 32),
    ] {
        let f = field(&r50, tap);
        assert_eq!((f.size, f.stride), (size, stride), "ResNet-50 {tap}");
    }
    let r18 = fields(Arch::ResNet18, 224);
    for (tap, size) in [
        ("layer1.1", 43),
        ("layer2.1", 99),
        ("layer3.1", 211),
        ("layer4.1", 435),
    ] {
        assert_eq!(field(&r18, tap).size, size, "ResNet-18 {tap}");
    }
}

#[test]
fn efficientnet_lite0_has_the_textbook_receptive_fields() {
    // EfficientNet-B0's layout (Lite0 keeps it, without squeeze-excite): the 3x3/2 stem sees
    // 3 px; each depthwise k x k convolution adds (k - 1) x the stride it runs at, a stage's
    // first one then doubling the stride. Stages (kernel, repeats, first stride): (3, 1, 1),
    // (3, 2, 2), (5, 2, 2), (3, 3, 2), (5, 3, 1), (5, 4, 2), (3, 1, 1).
    let all = fields(Arch::EfficientNetLite0, 224);
    for (tap, size, stride) in [
        ("stem", 3, 2),
        ("block0", 7, 2),
        ("block2", 19, 4),
        ("block4", 67, 8),
        ("block7", 147, 16),
        ("block10", 339, 16),
        ("block14", 787, 32),
        ("block15", 851, 32),
        ("head", 851, 32),
    ] {
        let f = field(&all, tap);
        assert_eq!((f.size, f.stride), (size, stride), "Lite0 {tap}");
        assert!(!f.global, "Lite0 has no squeeze-excite");
    }
}

#[test]
fn spans_are_clipped_to_the_image() {
    let f = ReceptiveField {
        size: 196,
        stride: 16,
        offset: -90,
        cells: 14,
        global: false,
    };
    assert_eq!(f.span(0, 224), (0, 106));
    assert_eq!(f.span(7, 224), (22, 218));
    assert_eq!(f.span(13, 224), (118, 224));
}

#[test]
fn squeeze_excitation_makes_fields_global() {
    let all = fields(Arch::MobileNetV3Large, 224);
    assert!(!field(&all, "stem").global);
    assert!(all.iter().any(|(_, f)| f.global));
    assert!(field(&all, "logits").global);
}

/// The input rows and columns `(r0, r1, c0, c1)` (half-open) where the gradient of every
/// channel of `tap`'s cell `(y, x)` is nonzero, for a random network and input.
fn gradient_support(
    backbone: &dyn Backbone,
    side: usize,
    tap: &str,
    (y, x): (usize, usize),
) -> (usize, usize, usize, usize) {
    // A fixed pseudo-random photo in [-1, 1).
    let values: Vec<f32> = (0..3 * side * side)
        .map(|i| ((i as f32 * 12.9898).sin() * 43758.547).fract())
        .collect();
    let input = Tensor::from_vec(values, (1, 3, side, side), &Device::Cpu).unwrap();
    let mut objective = |out: &Tensor| {
        let (_, c, h, w) = out.dims4()?;
        let mut mask = vec![0f32; c * h * w];
        for ch in 0..c {
            mask[(ch * h + y) * w + x] = 1.0;
        }
        Tensor::from_vec(mask, (1, c, h, w), &Device::Cpu)
    };
    let g = backbone
        .engine()
        .layer_gradient(&input, None, Some(tap), &mut objective)
        .unwrap()
        .gradient;
    let g = g.to_dtype(DType::F32).unwrap().abs().unwrap();
    let g = g
        .sum(1)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let (mut r0, mut r1, mut c0, mut c1) = (side, 0, side, 0);
    for (r, row) in g.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            if *v != 0.0 {
                (r0, r1, c0, c1) = (r0.min(r), r1.max(r + 1), c0.min(c), c1.max(c + 1));
            }
        }
    }
    (r0, r1, c0, c1)
}

/// The gradient test: an input pixel outside a cell's receptive field cannot change it, and
/// (all channels of the cell together, random weights) every pixel inside can.
fn check_against_gradients(arch: Arch, side: usize, taps: &[&str]) {
    let backbone = random_backbone(arch, &Device::Cpu, 7).unwrap();
    let all = receptive_fields(backbone.network(), side).unwrap();
    for tap in taps {
        let f = field(&all, tap);
        for cell in [(0, 0), (f.cells / 2, f.cells - 1)] {
            let (rows, cols) = (f.span(cell.0, side), f.span(cell.1, side));
            let (r0, r1, c0, c1) = gradient_support(backbone.as_ref(), side, tap, cell);
            assert_eq!(
                ((r0, r1), (c0, c1)),
                (rows, cols),
                "{arch} {tap} cell {cell:?}: gradient where the field is not, or none at its \
                 edge ({f:?})"
            );
        }
    }
}

#[test]
fn vgg16_fields_agree_with_input_gradients() {
    check_against_gradients(Arch::Vgg16, 128, &["conv2_2", "pool3", "conv4_3"]);
}

#[test]
fn resnet50_fields_agree_with_input_gradients() {
    check_against_gradients(Arch::ResNet50, 128, &["pool", "layer2.3", "layer3.0"]);
}

#[test]
fn efficientnet_lite0_fields_agree_with_input_gradients() {
    check_against_gradients(Arch::EfficientNetLite0, 128, &["stem", "block3", "block8"]);
}
