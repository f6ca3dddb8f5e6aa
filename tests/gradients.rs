//! Gradients reach the input through every op of the models: the backward pass agrees with
//! central finite differences (f64, a tiny VGG whose weights this test makes), and the fast
//! one-op program agrees with the layer-by-layer path, values and input gradients (PyTorch's
//! gradient itself is checked in golden.rs).

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use candle_nn::VarBuilder;
use cnn_explorer::model::vgg::{Vgg, VggConfig};
use cnn_explorer::model::{Arch, Backbone};
use cnn_explorer::weights::loading::random_backbone;

fn tiny_vgg_f64() -> Vgg {
    tiny_vgg(DType::F64)
}

fn tiny_vgg(dtype: DType) -> Vgg {
    let config = VggConfig {
        widths: [4, 6, 8, 8, 8],
        hidden: 16,
        num_classes: 5,
        ..VggConfig::vgg16()
    };
    // A first build records every parameter's name and shape; the test then makes random
    // f64 weights for them (f64 so that finite differences are accurate).
    let varmap = candle_nn::VarMap::new();
    Vgg::new(
        VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu),
        config.clone(),
    )
    .unwrap();
    let weights: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(name, var)| {
            let t = Tensor::randn(0f64, 0.3, var.shape(), &Device::Cpu).unwrap();
            (name.clone(), t.to_dtype(dtype).unwrap())
        })
        .collect();
    Vgg::new(
        VarBuilder::from_tensors(weights, dtype, &Device::Cpu),
        config,
    )
    .unwrap()
}

fn logit(model: &dyn Backbone, x: &Tensor, class: usize) -> f64 {
    model
        .forward(x)
        .unwrap()
        .i((0, class))
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn vgg_input_gradient_matches_finite_differences() {
    let model = tiny_vgg_f64();
    let x0 = Tensor::randn(0f64, 1.0, (1, 3, 40, 40), &Device::Cpu).unwrap();
    let x = Var::from_tensor(&x0).unwrap();
    let class = 2;
    let grads = model
        .forward(x.as_tensor())
        .unwrap()
        .i((0, class))
        .unwrap()
        .backward()
        .unwrap();
    let grad: Vec<f64> = grads
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let base: Vec<f64> = x0.flatten_all().unwrap().to_vec1().unwrap();
    let scale = grad.iter().fold(0f64, |m, g| m.max(g.abs()));
    assert!(scale > 0.0, "the gradient is not all zero");
    let eps = 1e-6;
    // Probe the coordinates with the largest gradients and a spread of others.
    let mut probes: Vec<usize> = (0..grad.len()).step_by(397).collect();
    let mut order: Vec<usize> = (0..grad.len()).collect();
    order.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()));
    probes.extend(&order[..10]);
    for &i in &probes {
        let mut plus = base.clone();
        plus[i] += eps;
        let mut minus = base.clone();
        minus[i] -= eps;
        let shape = (1, 3, 40, 40);
        let fp = logit(
            &model,
            &Tensor::from_vec(plus, shape, &Device::Cpu).unwrap(),
            class,
        );
        let fm = logit(
            &model,
            &Tensor::from_vec(minus, shape, &Device::Cpu).unwrap(),
            class,
        );
        let numeric = (fp - fm) / (2.0 * eps);
        let err = (numeric - grad[i]).abs() / scale;
        assert!(
            err < 1e-5,
            "coordinate {i}: numeric {numeric}, backward {}",
            grad[i]
        );
    }
}

#[test]
fn efficientnet_input_gradient_is_nonzero_and_finite() {
    // Same-padding, depthwise convolutions, ReLU6 and residuals all pass gradients on.
    let model = random_backbone(Arch::EfficientNetLite0, &Device::Cpu, 3).unwrap();
    let x =
        Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, 3, 64, 64), &Device::Cpu).unwrap()).unwrap();
    let grads = model
        .forward(x.as_tensor())
        .unwrap()
        .i((0, 1))
        .unwrap()
        .backward()
        .unwrap();
    let g = grads
        .get(x.as_tensor())
        .expect("gradient reaches the input");
    let v: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| x.is_finite()));
    assert!(v.iter().filter(|x| **x != 0.0).count() > v.len() / 2);
}

/// Deterministic pseudo-random values in [-1, 1] of `shape` (a seeded test never flakes: a
/// near-tie in a max-pool or ReLU could otherwise move a gradient between runs).
fn wave(shape: &[usize], phase: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((i as f32 * 12.9898 + phase).sin() * 43_758.547).fract() * 2.0 - 1.0)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The layer-by-layer path's activation at `tap` (the logits when `None`) and the input
/// gradient of `sum(activation * upstream)`, next to the program's.
fn both_paths(model: &dyn Backbone, x0: &Tensor, tap: Option<&str>) {
    let program = model.program().expect("the model has a fast program");
    let reference = Var::from_tensor(x0).unwrap();
    let mut found = None;
    let logits = model
        .forward_with(reference.as_tensor(), &mut |name, _, t| {
            if Some(name) == tap {
                found = Some(t.clone());
            }
        })
        .unwrap();
    let want = found.unwrap_or(logits);
    let fast = Var::from_tensor(x0).unwrap();
    let got = program.run(fast.as_tensor(), tap).unwrap();
    assert_eq!(got.dims(), want.dims(), "{tap:?}");
    let (diff, scale) = (max_abs(&(&got - &want).unwrap()), max_abs(&want));
    assert!(diff <= 1e-5 * scale.max(1e-3), "{tap:?}: {diff} of {scale}");

    let upstream = wave(want.dims(), 0.7);
    let gradient = |y: &Tensor, x: &Var| {
        let grads = (y * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        grads
            .get(x.as_tensor())
            .expect("gradient reaches the input")
            .clone()
    };
    let (g_want, g_got) = (gradient(&want, &reference), gradient(&got, &fast));
    let (diff, scale) = (max_abs(&(&g_got - &g_want).unwrap()), max_abs(&g_want));
    assert!(scale > 0.0, "{tap:?}: zero gradient");
    assert!(diff <= 1e-5 * scale, "{tap:?} gradient: {diff} of {scale}");
}

#[test]
fn vgg_program_matches_the_layer_by_layer_path() {
    let model = tiny_vgg(DType::F32);
    // 40: the adaptive pool spreads 1x1 to 7x7; 75: odd sizes drop rows in the max-pools.
    for side in [40, 75] {
        let x0 = Tensor::randn(0f32, 1.0, (2, 3, side, side), &Device::Cpu).unwrap();
        for tap in [None, Some("conv1_2"), Some("pool3"), Some("fc6")] {
            both_paths(&model, &x0, tap);
        }
    }
}

#[test]
fn efficientnet_program_matches_the_layer_by_layer_path() {
    // 57x61: TensorFlow "same" padding puts odd zeros bottom/right, differently per layer.
    let model = random_backbone(Arch::EfficientNetLite0, &Device::Cpu, 5).unwrap();
    let x0 = Tensor::randn(0f32, 1.0, (2, 3, 57, 61), &Device::Cpu).unwrap();
    for tap in [
        None,
        Some("stem"),
        Some("block1"),
        Some("block5"),
        Some("head"),
    ] {
        both_paths(model.as_ref(), &x0, tap);
    }
}

#[test]
fn resnet_programs_match_the_layer_by_layer_path() {
    // Odd sizes: the padded 3x3/2 max-pool and the strided convolutions meet uneven edges.
    let x0 = wave(&[2, 3, 57, 61], 0.1);
    for (arch, taps) in [
        (Arch::ResNet18, ["pool", "layer2.0", "layer4.1"]),
        (Arch::ResNet50, ["stem", "layer1.0", "layer3.5"]),
    ] {
        let model = random_backbone(arch, &Device::Cpu, 7).unwrap();
        both_paths(model.as_ref(), &x0, None);
        for tap in taps {
            both_paths(model.as_ref(), &x0, Some(tap));
        }
    }
}

#[test]
fn mobilenet_v3_program_matches_the_layer_by_layer_path() {
    let model = random_backbone(Arch::MobileNetV3Large, &Device::Cpu, 9).unwrap();
    let x0 = wave(&[2, 3, 57, 61], 0.2);
    for tap in [
        None,
        Some("stem"),
        Some("block3"),
        Some("block12"),
        Some("head"),
        Some("pre_logits"),
    ] {
        both_paths(model.as_ref(), &x0, tap);
    }
}

#[test]
fn every_fine_tunable_last_block_computes_the_embedding() {
    use cnn_explorer::train::finetune::TrainableBlock;
    let x = wave(&[2, 3, 64, 64], 0.3);
    for arch in [Arch::ResNet18, Arch::ResNet50, Arch::EfficientNetLite0] {
        let model = random_backbone(arch, &Device::Cpu, 11).unwrap();
        let block = model.last_block().expect("a block to fine-tune");
        let input = model.forward_until(&x, Some(&block.input_tap)).unwrap();
        let (_, c, h, w) = input.dims4().unwrap();
        let trainable = TrainableBlock::new(&block, [c, h, w], &candle_nn::VarMap::new()).unwrap();
        let got = trainable.forward(&input.flatten_from(1).unwrap()).unwrap();
        let want = model.embed(&x).unwrap();
        let (diff, scale) = (max_abs(&(&got - &want).unwrap()), max_abs(&want));
        assert!(diff <= 1e-4 * scale, "{arch}: {diff} of {scale}");
    }
}
