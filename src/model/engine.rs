//! A [`Network`] ready to run: with the fast CPU program where its weights are f32 on the CPU,
//! else (and for inputs the program cannot take) with candle's own ops.

use candle_core::{DType, Result, Tensor};

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
