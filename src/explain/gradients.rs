//! Gradients of a class score with respect to the input image, and the total-variation
//! regulariser that keeps dreamed images smooth.

use candle_core::{IndexOp, Result, Tensor, Var};

use crate::model::Backbone;

/// Mean squared difference of neighbouring pixels of `[B, C, H, W]`, summed over both
/// directions (the regulariser of the PyTorch reference benchmark).
pub fn total_variation(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let dh = (x.narrow(2, 1, h - 1)? - x.narrow(2, 0, h - 1)?)?;
    let dw = (x.narrow(3, 1, w - 1)? - x.narrow(3, 0, w - 1)?)?;
    dh.sqr()?.mean_all()? + dw.sqr()?.mean_all()?
}

/// The objective of one dream step: `logits[0, class] - tv_weight * TV(x)`, and its gradient
/// with respect to `x` `[1, 3, H, W]`.
pub fn class_score_gradient(
    backbone: &dyn Backbone,
    x: &Var,
    class: usize,
    tv_weight: f64,
) -> Result<(f32, Tensor)> {
    let logits = backbone.forward(x.as_tensor())?;
    let score = logits.i((0, class))?;
    let objective = (score - (total_variation(x.as_tensor())? * tv_weight)?)?;
    let grads = objective.backward()?;
    let grad = grads
        .get(x.as_tensor())
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg("no gradient reached the input".into()))?;
    Ok((objective.to_scalar::<f32>()?, grad))
}

/// One plain gradient-ascent step on `x`: `x += lr * grad`; returns the objective before it.
pub fn ascent_step(
    backbone: &dyn Backbone,
    x: &Var,
    class: usize,
    tv_weight: f64,
    lr: f64,
) -> Result<f32> {
    let (objective, grad) = class_score_gradient(backbone, x, class, tv_weight)?;
    x.set(&(x.as_tensor() + (grad * lr)?)?)?;
    Ok(objective)
}
