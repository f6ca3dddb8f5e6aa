//! Every kind of step, run by the program (our kernels) and by the reference path (candle's own
//! ops) on the same one- or two-layer networks: values and input gradients agree.

use candle_core::{Device, Tensor, Var};

use crate::kernels::{Activation, Padding, PoolWindow};
use crate::model::engine::Engine;
use crate::model::network::{ConvLayer, Layer, LinearLayer, NetworkBuilder, SqueezeExciteLayer};
use crate::model::{reference, TapKind};

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

thread_local! {
    /// How many tensors this test has drawn: each test runs on its own thread, so its values
    /// are the same on every run (random ones could put a ReLU input or a pooling tie within
    /// rounding of a bound now and then, and move a gradient between the two paths).
    static DRAWN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Deterministic pseudo-random values of `shape`, uniform with standard deviation `std`.
fn randn(shape: &[usize], std: f32) -> Tensor {
    let seed = DRAWN.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    let len: usize = shape.iter().product();
    let values: Vec<f32> = (0..len as u64)
        .map(|i| {
            // SplitMix64 of (seed, i): 53 bits to a uniform value in [-1, 1).
            let mut z = (seed << 32 ^ i).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
            ((unit * 2.0 - 1.0) * 3f64.sqrt()) as f32 * std
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Runs `layers` (the last one's output as the result) on `x0` both ways and compares the
/// outputs and the input gradients of `sum(output * upstream)`.
fn both_ways(layers: Vec<Layer>, x0: &Tensor, case: &str) {
    let mut net = NetworkBuilder::default();
    let n = layers.len();
    for (i, layer) in layers.into_iter().enumerate() {
        if i + 1 == n {
            net.push_tap(layer, "out", TapKind::Logits);
        } else {
            net.push(layer);
        }
    }
    let engine = Engine::build(net).unwrap();
    let (net, program) = (engine.network(), engine.program().expect("f32 CPU weights"));
    let (fast, slow) = (Var::from_tensor(x0).unwrap(), Var::from_tensor(x0).unwrap());
    let got = program.run(fast.as_tensor(), None).unwrap();
    let last = net.steps().len() - 1;
    let want = reference::forward(net, slow.as_tensor(), last, &mut |_, _, _| {}).unwrap();
    assert_eq!(got.dims(), want.dims(), "{case}");
    let (diff, scale) = (max_abs(&(&got - &want).unwrap()), max_abs(&want));
    assert!(diff <= 1e-5 * scale.max(1.0), "{case}: {diff} of {scale}");

    let upstream = randn(want.dims(), 1.0);
    let grad = |y: &Tensor, x: &Var| {
        let grads = (y * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        grads.get(x.as_tensor()).expect("a gradient").clone()
    };
    let (g_got, g_want) = (grad(&got, &fast), grad(&want, &slow));
    let (diff, scale) = (max_abs(&(&g_got - &g_want).unwrap()), max_abs(&g_want));
    assert!(scale > 0.0, "{case}: no gradient");
    assert!(
        diff <= 1e-5 * scale.max(1.0),
        "{case} gradient: {diff} of {scale}"
    );

    // Without gradients the program keeps only what it needs and gives the same values.
    let plain = program.run(x0, None).unwrap();
    assert_eq!(
        max_abs(&(&plain - &got).unwrap()),
        0.0,
        "{case}: no-grad run"
    );
}

fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, padding: Padding) -> ConvLayer {
    let depthwise = false;
    let weight = randn(&[c_out, c_in, k, k], 0.3);
    let bias = randn(&[c_out], 0.1);
    ConvLayer::new(
        weight,
        bias,
        (stride, padding),
        depthwise,
        Activation::Identity,
    )
    .unwrap()
}

fn depthwise(c: usize, k: usize, stride: usize, padding: Padding) -> ConvLayer {
    let weight = randn(&[c, 1, k, k], 0.3);
    let bias = randn(&[c], 0.1);
    ConvLayer::new(weight, bias, (stride, padding), true, Activation::Relu6).unwrap()
}

#[test]
fn convolutions_agree_with_candle() {
    let x = randn(&[2, 4, 13, 11], 1.0);
    let sym = Padding::Symmetric;
    for (k, stride, padding) in [
        (3, 1, sym(1)),
        (3, 2, sym(0)),
        (1, 1, sym(0)),
        (1, 2, sym(0)),
        (5, 2, sym(2)),
        (7, 2, sym(3)),
        (3, 2, Padding::TfSame),
        (5, 1, Padding::TfSame),
    ] {
        let case = format!("k{k} s{stride} {padding:?}");
        let mut dense = conv(4, 6, k, stride, padding);
        dense.activation = Activation::Relu;
        both_ways(vec![Layer::Conv(dense)], &x, &case);
        both_ways(
            vec![Layer::Conv(depthwise(4, k, stride, padding))],
            &x,
            &format!("dw {case}"),
        );
    }
    // Winograd: 3x3/1/1 with at least 16 channels each way, odd and even sizes.
    for side in [9, 12] {
        let x = randn(&[2, 16, side, side + 1], 1.0);
        let mut layer = conv(16, 24, 3, 1, sym(1));
        layer.activation = Activation::Relu;
        both_ways(vec![Layer::Conv(layer)], &x, &format!("winograd {side}"));
    }
}

#[test]
fn pools_and_linear_layers_agree_with_candle() {
    let x = randn(&[2, 3, 7, 8], 1.0);
    both_ways(
        vec![Layer::MaxPool(PoolWindow::TWO_BY_TWO)],
        &x,
        "2x2 pool, odd rows",
    );
    let pool3 = Layer::MaxPool(PoolWindow::THREE_BY_THREE_STRIDE_TWO);
    both_ways(vec![pool3], &randn(&[2, 3, 6, 5], 1.0), "3x3/2 pool");
    both_ways(vec![Layer::AdaptiveAvgPool(3)], &x, "adaptive 7x8 -> 3x3");
    both_ways(
        vec![Layer::AdaptiveAvgPool(7)],
        &randn(&[1, 2, 2, 2], 1.0),
        "adaptive up",
    );
    let fc = |i: usize, o: usize, activation| {
        LinearLayer::new(randn(&[o, i], 0.3), randn(&[o], 0.1), activation).unwrap()
    };
    let layers = vec![
        Layer::GlobalAvgPool,
        Layer::Linear(fc(3, 5, Activation::Relu)),
        Layer::Linear(fc(5, 4, Activation::Identity)),
    ];
    both_ways(layers, &x, "pool + linear");
    // A linear layer on a flattened map.
    let layers = vec![
        Layer::AdaptiveAvgPool(2),
        Layer::Linear(fc(12, 4, Activation::Relu6)),
    ];
    both_ways(layers, &x, "flatten + linear");
}

#[test]
fn residuals_hard_swish_and_squeeze_excite_agree_with_candle() {
    let x = randn(&[2, 8, 9, 9], 1.0);
    let linear = |i: usize, o: usize| {
        LinearLayer::new(randn(&[o, i], 0.3), randn(&[o], 0.1), Activation::Identity).unwrap()
    };
    let layers = vec![
        Layer::ResidualStart,
        Layer::Conv(conv(8, 8, 3, 1, Padding::Symmetric(1))),
        Layer::HardSwish,
        Layer::SqueezeExcite(SqueezeExciteLayer {
            reduce: linear(8, 4),
            expand: linear(4, 8),
        }),
        Layer::identity_add(),
    ];
    both_ways(layers, &x, "identity residual");
    let layers = vec![
        Layer::ResidualStart,
        Layer::Conv(conv(8, 12, 3, 2, Padding::Symmetric(1))),
        Layer::ResidualAdd {
            shortcut: Some(conv(8, 12, 1, 2, Padding::Symmetric(0))),
            activation: Activation::Relu,
        },
    ];
    both_ways(layers, &x, "projected residual");
}

#[test]
fn a_nan_wins_the_max_pool_forward_and_gets_the_gradient() {
    let rows = [[1f32, f32::NAN], [3., 2.]];
    let x = Var::from_tensor(&Tensor::new(&[[rows]], &Device::Cpu).unwrap()).unwrap();
    let mut net = NetworkBuilder::default();
    net.push_tap(Layer::MaxPool(PoolWindow::TWO_BY_TWO), "p", TapKind::Pool);
    let net = Engine::build(net).unwrap();
    let y = net.forward_until(x.as_tensor(), None).unwrap();
    let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v[0].is_nan(), "{v:?}");
    let g = y.sum_all().unwrap().backward().unwrap();
    let g: Vec<f32> = g
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(g, vec![0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn inference_frees_activations_it_no_longer_needs() {
    let x = randn(&[1, 4, 8, 8], 1.0);
    let layers: Vec<Layer> = (0..4)
        .map(|_| Layer::Conv(conv(4, 4, 3, 1, Padding::Symmetric(1))))
        .collect();
    let mut net = NetworkBuilder::default();
    net.push(Layer::ResidualStart);
    net.extend(layers);
    net.push_tap(Layer::identity_add(), "out", TapKind::Block);
    let program = Engine::build(net).unwrap().program().cloned().unwrap();
    let data: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let input = (1, super::Dims::map(4, 8, 8));
    let saved =
        super::run_forward(&program, &data, input, 5, false, &mut |_, _, _| Ok(())).unwrap();
    let alive = saved.outputs.iter().filter(|o| o.is_some()).count();
    assert_eq!(alive, 1, "only the result is left");
    let saved = super::run_forward(&program, &data, input, 5, true, &mut |_, _, _| Ok(())).unwrap();
    assert!(saved.outputs.iter().all(Option::is_some));
}

#[test]
fn adaptive_pool_matches_pytorch_bins() {
    // 3x3 -> 2x2: bins rows {0,1},{1,2}; the mean of [[0,1,2],[3,4,5],[6,7,8]] bins.
    let x = Tensor::arange(0f32, 9., &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 3, 3))
        .unwrap();
    let y = reference::adaptive_avg_pool2d(&x, 2).unwrap();
    let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(v, vec![2.0, 3.0, 5.0, 6.0]);
}

#[test]
fn candles_max_pool_gradient_is_corrected_to_one_per_window() {
    let rows = [
        [1f32, 5., 0., 0.],
        [2., 3., 0., 0.],
        [0., 0., 9., 9.],
        [0., 0., 9., 1.],
    ];
    let x = Var::from_tensor(&Tensor::new(&[[rows]], &Device::Cpu).unwrap()).unwrap();
    let y = reference::max_pool2x2(x.as_tensor()).unwrap();
    let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(v, vec![5.0, 0.0, 0.0, 9.0]);
    let g = y.sum_all().unwrap().backward().unwrap();
    let g: Vec<f32> = g
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    // One maximum gets all of the gradient; k tied maxima 1/k each.
    assert_eq!((g[1], g[0]), (1.0, 0.0));
    for i in [10, 11, 14] {
        assert!((g[i] - 1.0 / 3.0).abs() < 1e-6, "{g:?}");
    }
    assert!((g.iter().sum::<f32>() - 4.0).abs() < 1e-5);
}

/// `[B, 2, H, W]` -> conv -> (residual: conv tapped `inner`, add tapped `block`) -> mean ->
/// linear `logits` `[B, 3]`.
fn residual_net() -> Engine {
    let linear = LinearLayer::new(randn(&[3, 6], 0.3), randn(&[3], 0.1), Activation::Identity);
    let mut net = NetworkBuilder::default();
    net.push(Layer::Conv(conv(2, 6, 3, 1, Padding::Symmetric(1))));
    net.push(Layer::ResidualStart);
    net.push_tap(
        Layer::Conv(conv(6, 6, 3, 1, Padding::Symmetric(1))),
        "inner",
        TapKind::Conv,
    );
    net.push_tap(Layer::identity_add(), "block", TapKind::Block);
    net.push(Layer::GlobalAvgPool);
    net.push_tap(Layer::Linear(linear.unwrap()), "logits", TapKind::Logits);
    Engine::build(net).unwrap()
}

#[test]
fn several_taps_from_one_pass_match_separate_runs_in_values_and_gradients() {
    // A tap inside an open residual and one after it, and the logits.
    let engine = residual_net();
    let x0 = randn(&[2, 2, 7, 7], 1.0);
    let untils = [Some("block"), None, Some("inner")];
    let weights: Vec<Tensor> = [[2, 6, 7, 7], [2, 3, 1, 1], [2, 6, 7, 7]]
        .iter()
        .map(|d| randn(d, 1.0))
        .collect();
    // Every way of running: the program's one pass, candle's one pass, and separate runs.
    let objective = |outs: &[Tensor]| {
        let mut total = Tensor::new(0f32, &Device::Cpu).unwrap();
        for (o, w) in outs.iter().zip(&weights) {
            let w = w.reshape(o.dims()).unwrap();
            total = (total + (o * w).unwrap().sum_all().unwrap()).unwrap();
        }
        total
    };
    let gradient = |run: &dyn Fn(&Tensor) -> Vec<Tensor>| {
        let x = Var::from_tensor(&x0).unwrap();
        let outs = run(x.as_tensor());
        let grads = objective(&outs).backward().unwrap();
        (outs, grads.get(x.as_tensor()).unwrap().clone())
    };
    let program = engine.program().unwrap();
    let (one, g_one) = gradient(&|x| program.run_at(x, &untils).unwrap());
    let (apart, g_apart) =
        gradient(&|x| untils.iter().map(|u| program.run(x, *u).unwrap()).collect());
    let network = engine.network();
    let (slow, g_slow) = gradient(&|x| {
        let mut taps = Vec::new();
        let logits = reference::forward(network, x, network.steps().len() - 1, &mut |n, _, t| {
            taps.push((n.to_string(), t.clone()))
        })
        .unwrap();
        let tap = |n: &str| taps.iter().find(|(m, _)| m == n).unwrap().1.clone();
        vec![tap("block"), logits, tap("inner")]
    });
    for (i, ((a, b), c)) in one.iter().zip(&apart).zip(&slow).enumerate() {
        assert_eq!(a.dims(), b.dims(), "output {i}");
        assert_eq!(max_abs(&(a - b).unwrap()), 0.0, "output {i}");
        assert!(max_abs(&(a - c).unwrap()) <= 1e-5 * max_abs(c).max(1.0));
    }
    let scale = max_abs(&g_apart);
    assert!(scale > 0.0);
    assert!(max_abs(&(&g_one - &g_apart).unwrap()) <= 1e-5 * scale);
    assert!(max_abs(&(&g_one - &g_slow).unwrap()) <= 1e-5 * scale);
    // Without gradients (the engine's entry point) the values are the same.
    let plain = engine.forward_at(&x0, &untils).unwrap();
    for (a, b) in plain.iter().zip(&one) {
        assert_eq!(max_abs(&(a - b).unwrap()), 0.0);
    }
}

#[test]
fn layer_gradients_agree_between_the_program_and_candles_split_pass() {
    // A tap inside an open residual, the residual's end, and the input; the logits' gradient.
    let fast = residual_net();
    let slow = Engine::without_program(fast.network().clone());
    let x0 = randn(&[2, 2, 7, 7], 1.0);
    let upstream = randn(&[2, 3], 1.0);
    let mut objective = |_: &Tensor| Ok(upstream.clone());
    for layer in [Some("inner"), Some("block"), None] {
        let a = fast
            .layer_gradient(&x0, layer, None, &mut objective)
            .unwrap();
        let b = slow
            .layer_gradient(&x0, layer, None, &mut objective)
            .unwrap();
        assert_eq!(a.gradient.dims(), b.gradient.dims(), "{layer:?}");
        let scale = max_abs(&b.gradient);
        assert!(scale > 0.0, "{layer:?}");
        let diff = max_abs(&(&a.gradient - &b.gradient).unwrap());
        assert!(diff <= 1e-5 * scale, "{layer:?}: {diff} of {scale}");
        assert!(max_abs(&(&a.activation - &b.activation).unwrap()) <= 1e-5);
        assert!(max_abs(&(&a.output - &b.output).unwrap()) <= 1e-5);
    }
    // The input's gradient is the one candle's autograd gives through the program.
    let x = Var::from_tensor(&x0).unwrap();
    let logits = fast.program().unwrap().run(x.as_tensor(), None).unwrap();
    let grads = (logits * &upstream)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let want = grads.get(x.as_tensor()).unwrap();
    let got = fast
        .layer_gradient(&x0, None, None, &mut objective)
        .unwrap()
        .gradient;
    assert!(max_abs(&(&got - want).unwrap()) <= 1e-6 * max_abs(want));
    // At the residual's end inside the block, the gradient is the output's own: the skip
    // that left before "inner" does not reach it (PyTorch's hooks see the same).
    let at_block = fast
        .layer_gradient(&x0, Some("block"), Some("block"), &mut |o| o.ones_like())
        .unwrap();
    assert_eq!(max_abs(&(at_block.gradient - 1.0).unwrap()), 0.0);
}
