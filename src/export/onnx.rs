//! A classifier's layers as an ONNX graph (opset 17): one input `input` `[N, 3, H, W]`, one
//! output `logits` `[N, classes]`.
//!
//! Each [`Layer`] of the network's one description becomes the ONNX operators that compute
//! it, with the spatial size followed through the graph so TensorFlow "same" padding becomes
//! explicit pads. Only operators that onnxruntime and `candle-onnx` both evaluate are used:
//! a global average is `ReduceMean` (not `GlobalAveragePool`), hard-sigmoid is spelled out as
//! `Clip((x + 3), 0, 6) / 6`, and a padded max-pool reflects its borders first, which gives
//! the same maxima (see [`Graph::max_pool`]).

use candle_core::Tensor;

use super::proto::{self, Attr, Dim, Message};
use crate::error::{Error, Result};
use crate::kernels::{Activation, PoolWindow};
use crate::model::network::{ConvLayer, Layer, LinearLayer, SqueezeExciteLayer, Step};

/// The ONNX opset the graph is written for (HardSwish needs 14; ReduceMean keeps its `axes`
/// attribute up to 17).
pub const OPSET: i64 = 17;
/// The IR version of opset 17.
const IR_VERSION: i64 = 8;

/// What flows between two nodes: a feature map or a flat vector, per example.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Map { c: usize, h: usize, w: usize },
    Flat(usize),
}

/// The graph being written.
struct Graph {
    nodes: Vec<Message>,
    initializers: Vec<Message>,
    /// The value the next node reads and its shape.
    current: String,
    shape: Shape,
    /// Starts of the open residuals (value, shape).
    residuals: Vec<(String, Shape)>,
    counter: usize,
}

fn unsupported(what: String) -> Error {
    Error::Invalid(format!("cannot export to ONNX: {what}"))
}

fn raw(t: &Tensor) -> Result<Vec<u8>> {
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

impl Graph {
    fn fresh(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("{what}_{}", self.counter)
    }

    fn weight(&mut self, what: &str, t: &Tensor, dims: &[usize]) -> Result<String> {
        let name = self.fresh(what);
        self.initializers
            .push(proto::tensor(&name, dims, proto::FLOAT, &raw(t)?));
        Ok(name)
    }

    fn scalar(&mut self, what: &str, v: f32) -> String {
        let name = self.fresh(what);
        self.initializers
            .push(proto::tensor(&name, &[], proto::FLOAT, &v.to_le_bytes()));
        name
    }

    /// Appends `op` reading `inputs` and returns its output's name.
    fn op(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.nodes
            .push(proto::node(op, &out, inputs, &[out.as_str()], attrs));
        out
    }

    /// Appends `op` on the current value, which its output replaces.
    fn apply(&mut self, op: &str, extra: &[&str], attrs: &[(&str, Attr)]) {
        let x = self.current.clone();
        let inputs: Vec<&str> = std::iter::once(x.as_str())
            .chain(extra.iter().copied())
            .collect();
        self.current = self.op(op, &inputs, attrs);
    }

    fn activation(&mut self, a: Activation) {
        match a {
            Activation::Identity => {}
            Activation::Relu => self.apply("Relu", &[], &[]),
            Activation::Relu6 => self.clip(0.0, 6.0),
        }
    }

    fn clip(&mut self, lo: f32, hi: f32) {
        let (lo, hi) = (self.scalar("zero", lo), self.scalar("six", hi));
        self.apply("Clip", &[&lo, &hi], &[]);
    }

    /// A convolution of the current value (whose shape is `shape`), without its activation.
    fn conv_node(&mut self, c: &ConvLayer, input: &str, shape: Shape) -> Result<(String, Shape)> {
        let Shape::Map { c: c_in, h, w } = shape else {
            return Err(unsupported("a convolution after a flattening layer".into()));
        };
        let (k, s) = (c.kernel(), c.stride);
        let (c_out, w_in, _, _) = c.weight.dims4()?;
        let sides = |n| c.padding.sides(n, k, s);
        let (Some((top, bottom)), Some((left, right))) = (sides(h), sides(w)) else {
            return Err(unsupported(format!("a {k}x{k} kernel on a {h}x{w} map")));
        };
        let group = if c.depthwise { c_in } else { 1 };
        if w_in * group != c_in {
            return Err(unsupported(format!(
                "a convolution of {c_in} channels with weights {:?}",
                c.weight.dims()
            )));
        }
        let weight = self.weight("conv_w", &c.weight, c.weight.dims())?;
        let bias = self.weight("conv_b", &c.bias, &[c_out])?;
        let pads = [top, left, bottom, right].map(|p| p as i64).to_vec();
        let out = self.op(
            "Conv",
            &[input, &weight, &bias],
            &[
                ("kernel_shape", Attr::Ints(vec![k as i64; 2])),
                ("strides", Attr::Ints(vec![s as i64; 2])),
                ("pads", Attr::Ints(pads)),
                ("group", Attr::Int(group as i64)),
            ],
        );
        let out_size = |n: usize, a: usize, b: usize| (n + a + b - k) / s + 1;
        Ok((
            out,
            Shape::Map {
                c: c_out,
                h: out_size(h, top, bottom),
                w: out_size(w, left, right),
            },
        ))
    }

    fn conv(&mut self, c: &ConvLayer) -> Result<()> {
        let x = self.current.clone();
        (self.current, self.shape) = self.conv_node(c, &x, self.shape)?;
        self.activation(c.activation);
        Ok(())
    }

    fn max_pool(&mut self, p: &PoolWindow) -> Result<()> {
        let Shape::Map { c, h, w } = self.shape else {
            return Err(unsupported("a max-pool after a flattening layer".into()));
        };
        if p.padding > 0 {
            // Reflected borders never change a window's maximum when `2 * pad <= kernel - 1`
            // (what PyTorch allows): every reflected value is also inside the same window.
            if 2 * p.padding + 1 > p.kernel {
                return Err(unsupported(format!(
                    "a {}x{} max-pool padded by {}",
                    p.kernel, p.kernel, p.padding
                )));
            }
            let q = p.padding as i64;
            let pads = [0, 0, q, q, 0, 0, q, q];
            let bytes: Vec<u8> = pads.iter().flat_map(|v: &i64| v.to_le_bytes()).collect();
            let name = self.fresh("pads");
            self.initializers
                .push(proto::tensor(&name, &[8], proto::INT64, &bytes));
            self.apply("Pad", &[&name], &[("mode", Attr::Str("reflect"))]);
        }
        let (k, s) = (p.kernel as i64, p.stride as i64);
        self.apply(
            "MaxPool",
            &[],
            &[
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![s, s])),
            ],
        );
        let (oh, ow) = (p.out_size(h), p.out_size(w));
        if oh == 0 || ow == 0 {
            return Err(unsupported(format!("a {k}x{k} pool on a {h}x{w} map")));
        }
        self.shape = Shape::Map { c, h: oh, w: ow };
        Ok(())
    }

    fn adaptive_avg_pool(&mut self, n: usize) -> Result<()> {
        let Shape::Map { c, h, w } = self.shape else {
            return Err(unsupported(
                "an adaptive pool after a flattening layer".into(),
            ));
        };
        if (h, w) == (n, n) {
            return Ok(());
        }
        if n == 0 || h % n != 0 || w % n != 0 {
            return Err(unsupported(format!(
                "an adaptive {n}x{n} pool of a {h}x{w} map"
            )));
        }
        let (kh, kw) = ((h / n) as i64, (w / n) as i64);
        self.apply(
            "AveragePool",
            &[],
            &[
                ("kernel_shape", Attr::Ints(vec![kh, kw])),
                ("strides", Attr::Ints(vec![kh, kw])),
            ],
        );
        self.shape = Shape::Map { c, h: n, w: n };
        Ok(())
    }

    /// The mean over space: `[N, C, H, W]` -> `[N, C]`, or `[N, C, 1, 1]` with `keep`.
    fn spatial_mean(&mut self, input: &str, keep: bool) -> String {
        self.op(
            "ReduceMean",
            &[input],
            &[
                ("axes", Attr::Ints(vec![2, 3])),
                ("keepdims", Attr::Int(i64::from(keep))),
            ],
        )
    }

    fn global_avg_pool(&mut self) -> Result<()> {
        let Shape::Map { c, .. } = self.shape else {
            return Err(unsupported("a global pool after a flattening layer".into()));
        };
        let x = self.current.clone();
        self.current = self.spatial_mean(&x, false);
        self.shape = Shape::Flat(c);
        Ok(())
    }

    /// `x @ weight^T + bias` of `input` (`[N, in]`), before any activation.
    fn gemm(&mut self, l: &LinearLayer, input: &str) -> Result<String> {
        let (out, inp) = l.weight.dims2()?;
        let weight = self.weight("fc_w", &l.weight, &[out, inp])?;
        let bias = self.weight("fc_b", &l.bias, &[out])?;
        Ok(self.op(
            "Gemm",
            &[input, &weight, &bias],
            &[("transB", Attr::Int(1))],
        ))
    }

    fn linear(&mut self, l: &LinearLayer) -> Result<()> {
        let width = match self.shape {
            Shape::Map { c, h, w } => {
                self.apply("Flatten", &[], &[("axis", Attr::Int(1))]);
                c * h * w
            }
            Shape::Flat(f) => f,
        };
        let (out, inp) = l.weight.dims2()?;
        if inp != width {
            return Err(unsupported(format!(
                "a {inp}-input linear layer on {width} values"
            )));
        }
        let x = self.current.clone();
        self.current = self.gemm(l, &x)?;
        self.shape = Shape::Flat(out);
        self.activation(l.activation);
        Ok(())
    }

    /// `relu6(x + 3) / 6` of `input`.
    fn hard_sigmoid(&mut self, input: &str) -> String {
        let three = self.scalar("three", 3.0);
        let shifted = self.op("Add", &[input, &three], &[]);
        let (lo, hi) = (self.scalar("zero", 0.0), self.scalar("six", 6.0));
        let clipped = self.op("Clip", &[&shifted, &lo, &hi], &[]);
        let six = self.scalar("six", 6.0);
        self.op("Div", &[&clipped, &six], &[])
    }

    /// A 1x1 convolution of `input` (`[N, in, 1, 1]`) with a linear layer's weights.
    fn pointwise(&mut self, l: &LinearLayer, input: &str) -> Result<String> {
        let (out, inp) = l.weight.dims2()?;
        let weight = self.weight("se_w", &l.weight, &[out, inp, 1, 1])?;
        let bias = self.weight("se_b", &l.bias, &[out])?;
        Ok(self.op("Conv", &[input, &weight, &bias], &[]))
    }

    fn squeeze_excite(&mut self, se: &SqueezeExciteLayer) -> Result<()> {
        if !matches!(self.shape, Shape::Map { .. }) {
            return Err(unsupported(
                "squeeze-excite after a flattening layer".into(),
            ));
        }
        // On `[N, C, 1, 1]` throughout, so the gate multiplies the map by broadcasting.
        let x = self.current.clone();
        let squeezed = self.spatial_mean(&x, true);
        let hidden = self.pointwise(&se.reduce, &squeezed)?;
        let hidden = self.op("Relu", &[&hidden], &[]);
        let gate = self.pointwise(&se.expand, &hidden)?;
        let gate = self.hard_sigmoid(&gate);
        self.current = self.op("Mul", &[&x, &gate], &[]);
        Ok(())
    }

    fn hard_swish(&mut self) {
        self.apply("HardSwish", &[], &[]);
    }

    fn residual_add(&mut self, shortcut: Option<&ConvLayer>, activation: Activation) -> Result<()> {
        let (start, start_shape) = self
            .residuals
            .pop()
            .ok_or_else(|| unsupported("a residual end without its start".into()))?;
        let (skip, skip_shape) = match shortcut {
            Some(c) => self.conv_node(c, &start, start_shape)?,
            None => (start, start_shape),
        };
        if skip_shape != self.shape {
            return Err(unsupported(format!(
                "a residual adding {skip_shape:?} to {:?}",
                self.shape
            )));
        }
        let x = self.current.clone();
        self.current = self.op("Add", &[&x, &skip], &[]);
        self.activation(activation);
        Ok(())
    }

    fn layer(&mut self, layer: &Layer) -> Result<()> {
        match layer {
            Layer::Conv(c) => self.conv(c)?,
            Layer::MaxPool(p) => self.max_pool(p)?,
            Layer::AdaptiveAvgPool(n) => self.adaptive_avg_pool(*n)?,
            Layer::GlobalAvgPool => self.global_avg_pool()?,
            Layer::Linear(l) => self.linear(l)?,
            Layer::HardSwish => self.hard_swish(),
            Layer::SqueezeExcite(se) => self.squeeze_excite(se)?,
            Layer::ResidualStart => self.residuals.push((self.current.clone(), self.shape)),
            Layer::ResidualAdd {
                shortcut,
                activation,
            } => self.residual_add(shortcut.as_ref(), *activation)?,
        }
        Ok(())
    }
}

/// What the exported model is: its layers, input size, and the metadata stored with it.
pub struct OnnxModel<'a> {
    /// The layers from the input to the logits.
    pub steps: &'a [Step],
    /// Side of the square input.
    pub size: usize,
    /// `(key, value)` pairs saved as the model's `metadata_props`.
    pub metadata: Vec<(String, String)>,
    /// The graph's name (the model and head).
    pub name: String,
}

/// The serialized `ModelProto` of `model`: `input` `[N, 3, size, size]` -> `logits`
/// `[N, classes]`.
pub fn to_onnx(model: &OnnxModel) -> Result<Vec<u8>> {
    let mut graph = Graph {
        nodes: Vec::new(),
        initializers: Vec::new(),
        current: "input".into(),
        shape: Shape::Map {
            c: 3,
            h: model.size,
            w: model.size,
        },
        residuals: Vec::new(),
        counter: 0,
    };
    for step in model.steps {
        graph.layer(&step.layer)?;
    }
    let Shape::Flat(classes) = graph.shape else {
        return Err(unsupported(
            "the layers end in a feature map, not class scores".into(),
        ));
    };
    if !graph.residuals.is_empty() {
        return Err(unsupported("a residual left open".into()));
    }
    let last = graph.current.clone();
    graph.nodes.push(proto::node(
        "Identity",
        "logits",
        &[&last],
        &["logits"],
        &[],
    ));
    let size = Dim::Size(model.size);
    let input = proto::value_info(
        "input",
        &[Dim::Symbol("N"), Dim::Size(3), size.clone(), size],
    );
    let output = proto::value_info("logits", &[Dim::Symbol("N"), Dim::Size(classes)]);
    let mut g = Message::default();
    for n in &graph.nodes {
        g = g.message(1, n);
    }
    g = g.string(2, &model.name);
    for t in &graph.initializers {
        g = g.message(5, t);
    }
    g = g.message(11, &input).message(12, &output);
    let opset = Message::default().string(1, "").int(2, OPSET);
    let mut m = Message::default()
        .int(1, IR_VERSION)
        .string(2, "cnn-explorer")
        .string(3, env!("CARGO_PKG_VERSION"))
        .message(7, &g)
        .message(8, &opset);
    for (k, v) in &model.metadata {
        m = m.message(14, &proto::entry(k, v));
    }
    Ok(m.into_bytes())
}
