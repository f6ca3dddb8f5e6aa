//! A [`Network`] ready to run: with the fast CPU program where its weights are f32 on the CPU,
//! else (and for inputs the program cannot take) with candle's own ops.

use candle_core::{DType, Result, Tensor, Var};

use super::network::{Network, NetworkBuilder, TapSink};
use super::program::FrozenProgram;
use super::reference;

/// A network and, when its weights allow one, its program.
#[derive(Debug, Clone)]
pub struct Engine {
    network: Network,
    program: Option<FrozenProgram>,
}

impl Engine {
    pub fn new(network: Network) -> Self {
        let on_cpu_f32 = network
            .steps()
            .iter()
            .flat_map(|s| s.layer.tensors())
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32);
        let program = on_cpu_f32.then(|| FrozenProgram::new(network.steps()));
        Self { network, program }
    }

    /// An engine that always runs candle's ops (tests compare the two ways).
    #[cfg(test)]
    pub(crate) fn without_program(network: Network) -> Self {
        Self {
            network,
            program: None,
        }
    }

    /// The engine of the network `builder` describes.
    pub fn build(builder: NetworkBuilder) -> Result<Self> {
        Ok(Self::new(builder.build()?))
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The fast CPU op, where the weights are f32 on the CPU.
    pub fn program(&self) -> Option<&FrozenProgram> {
        self.program.as_ref()
    }

    /// The activation of tap `until` (`[B, C, H, W]` or `[B, F]`; the logits when `None`),
    /// computing only the layers up to it: with the fast program where it supports `x`, else
    /// with candle's ops. Gradients flow to `x` when it tracks them (dreams, attacks).
    pub fn forward_until(&self, x: &Tensor, until: Option<&str>) -> Result<Tensor> {
        match self.program().filter(|p| p.supports(x)) {
            Some(program) => program.run(x, until),
            None => {
                let last = self.network.last_step(until)?;
                reference::forward(&self.network, x, last, &mut |_, _, _| {})
            }
        }
    }

    /// The activations of several taps (by name; the logits for `None`), in the order asked,
    /// from one pass up to the deepest of them; gradients flow to `x` from all of them.
    pub fn forward_at(&self, x: &Tensor, untils: &[Option<&str>]) -> Result<Vec<Tensor>> {
        if let Some(program) = self.program().filter(|p| p.supports(x)) {
            return program.run_at(x, untils);
        }
        let steps: Vec<usize> = untils
            .iter()
            .map(|u| self.network.last_step(*u))
            .collect::<Result<_>>()?;
        let Some(&last) = steps.iter().max() else {
            return Ok(Vec::new());
        };
        let mut seen: Vec<(String, Tensor)> = Vec::new();
        let out = reference::forward(&self.network, x, last, &mut |name, _, t| {
            if untils.contains(&Some(name)) {
                seen.push((name.to_string(), t.clone()));
            }
        })?;
        untils
            .iter()
            .map(|u| match u {
                None => Ok(out.clone()),
                Some(name) => seen
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t.clone())
                    .ok_or_else(|| candle_core::Error::Msg(format!("no layer named {name}"))),
            })
            .collect()
    }

    /// The gradient of an objective of tap `output`'s activation (the logits when `None`)
    /// with respect to tap `layer`'s activation (the input `x` `[B, 3, H, W]` when `None`):
    /// Grad-CAM's and the input-gradient methods' one primitive. `objective` receives the
    /// output `[B, ...]` (no gradients) and returns the objective's gradient with respect to
    /// it, same shape (a one-hot row per image for a class score).
    ///
    /// The gradient is the partial derivative at the layer, as PyTorch's hooks see it: what
    /// later steps receive from the layer's output, not through residual skips that left
    /// before it.
    pub fn layer_gradient(
        &self,
        x: &Tensor,
        layer: Option<&str>,
        output: Option<&str>,
        objective: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<LayerGradient> {
        let last = self.network.last_step(output)?;
        let layer_step = layer.map(|l| self.network.last_step(Some(l))).transpose()?;
        if layer_step.is_some_and(|l| l > last) {
            candle_core::bail!(
                "layer {} comes after {}, which it would be explained by",
                layer.unwrap_or_default(),
                output.unwrap_or("the logits")
            );
        }
        if let Some(program) = self.program().filter(|p| p.supports(x)) {
            let (output, activation, gradient) =
                program.layer_gradient(x, layer_step, last, objective)?;
            return Ok(LayerGradient {
                output,
                activation,
                gradient,
            });
        }
        // candle keeps no gradient of an intermediate tensor: the pass is split at the layer,
        // whose activation becomes a variable the second half starts from.
        let mut residuals = Vec::new();
        let (start, first) = match layer_step {
            None => (x.detach(), 0),
            Some(l) => (
                reference::forward_steps(
                    &self.network,
                    &x.detach(),
                    0..=l,
                    &mut residuals,
                    &mut |_, _, _| {},
                )?,
                l + 1,
            ),
        };
        let residuals: Vec<Tensor> = residuals.iter().map(Tensor::detach).collect();
        let var = Var::from_tensor(&start)?;
        let out = if first > last {
            var.as_tensor().clone()
        } else {
            let mut open = residuals;
            reference::forward_steps(
                &self.network,
                var.as_tensor(),
                first..=last,
                &mut open,
                &mut |_, _, _| {},
            )?
        };
        let grad_out = objective(&out.detach())?;
        let grads = (&out * grad_out.detach())?.sum_all()?.backward()?;
        let gradient = match grads.get(var.as_tensor()) {
            Some(g) => g.clone(),
            None => var.as_tensor().zeros_like()?,
        };
        Ok(LayerGradient {
            output: out.detach(),
            activation: var.as_tensor().detach(),
            gradient,
        })
    }

    /// The logits `[B, classes]`, reporting every tap to `sink` (the logits last). Without
    /// gradients to `x`, the fast program computes them where it can.
    pub fn forward_with(&self, x: &Tensor, sink: TapSink) -> Result<Tensor> {
        let last = self.network.steps().len() - 1;
        match self.program().filter(|p| p.supports(x) && !x.track_op()) {
            Some(program) => program.run_with_taps(x, sink),
            None => reference::forward(&self.network, x, last, sink),
        }
    }
}

/// What [`Engine::layer_gradient`] gives.
#[derive(Debug, Clone)]
pub struct LayerGradient {
    /// The output the objective read, `[B, ...]`.
    pub output: Tensor,
    /// The layer's activation (or the input), `[B, C, H, W]` (`[B, F]` for fc taps).
    pub activation: Tensor,
    /// The objective's gradient with respect to it, same shape.
    pub gradient: Tensor,
}
