//! Adam with PyTorch's update rule (`torch.optim.Adam`, single-tensor form), in Rust so its
//! state can be saved: tch's optimiser lives in C++ and exposes none, and a run resumed
//! without its moments does not end as an uninterrupted one does.
use super::fit::Adam;
use crate::{Error, Result};
use std::collections::HashMap;
use tch::{nn, Kind, Tensor};

/// Per-parameter state, created at a parameter's first gradient (as PyTorch does).
struct Moments {
    step: i64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

struct Param {
    name: String,
    tensor: Tensor,
    group: usize,
    /// Multiplier of the group's rate (layer-wise decay).
    scale: f64,
    state: Option<Moments>,
}

/// Adam over a var store's trainable variables, one learning rate per variable group.
pub struct AdamOptimizer {
    cfg: Adam,
    lrs: Vec<f64>,
    params: Vec<Param>,
}

const EXP_AVG: &str = "adam.exp_avg/";
const EXP_AVG_SQ: &str = "adam.exp_avg_sq/";
const STEP: &str = "adam.step/";

impl AdamOptimizer {
    pub fn new(vs: &nn::VarStore, cfg: Adam, lrs: &[f64]) -> Result<AdamOptimizer> {
        let vars = vs.variables_.lock().map_err(|_| Error::Training("the var store's lock is poisoned".into()))?;
        let names: HashMap<usize, &String> =
            vars.named_variables.iter().map(|(n, t)| (t.data_ptr() as usize, n)).collect();
        let mut params = Vec::new();
        for v in &vars.trainable_variables {
            let name = names.get(&(v.tensor.data_ptr() as usize)).ok_or_else(|| {
                Error::Training(format!("a trainable variable of shape {:?} has no name", v.tensor.size()))
            })?;
            if v.group >= lrs.len() {
                return Err(Error::invalid(
                    "learning rates",
                    format!("{name} is in group {} but {} rate(s) were given", v.group, lrs.len()),
                ));
            }
            params.push(Param {
                name: (*name).clone(),
                tensor: v.tensor.shallow_clone(),
                group: v.group,
                scale: 1.0,
                state: None,
            });
        }
        params.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(AdamOptimizer { cfg, lrs: lrs.to_vec(), params })
    }

    /// Scales each parameter's rate by the longest prefix in `scales` its name starts with.
    pub fn with_scales(mut self, scales: &[(String, f64)]) -> AdamOptimizer {
        for p in &mut self.params {
            let best =
                scales.iter().filter(|(prefix, _)| p.name.starts_with(prefix.as_str())).max_by_key(|(p, _)| p.len());
            p.scale = best.map_or(1.0, |(_, s)| *s);
        }
        self
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.tensor.zero_grad();
        }
    }

    /// One update of every parameter that has a gradient; frozen ones are left alone.
    pub fn step(&mut self) {
        let Adam { beta1, beta2, eps } = self.cfg;
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.tensor.grad();
                if !g.defined() {
                    continue;
                }
                let m = p.state.get_or_insert_with(|| Moments {
                    step: 0,
                    exp_avg: p.tensor.zeros_like(),
                    exp_avg_sq: p.tensor.zeros_like(),
                });
                m.step += 1;
                let _ = m.exp_avg.lerp_(&g, 1.0 - beta1);
                let _ = m.exp_avg_sq.g_mul_scalar_(beta2).addcmul_(&g, &(&g * (1.0 - beta2)));
                let bc1 = 1.0 - beta1.powi(m.step as i32);
                let bc2 = 1.0 - beta2.powi(m.step as i32);
                let denom = (m.exp_avg_sq.sqrt() / bc2.sqrt()).g_add_scalar_(eps);
                let _ = p.tensor.addcdiv_(&(&m.exp_avg * (-self.lrs[p.group] * p.scale / bc1)), &denom);
            }
        });
    }

    /// Zero gradients, backpropagate `loss`, update.
    pub fn backward_step(&mut self, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.step();
    }

    /// The moments and step counts, named after their parameters.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for p in &self.params {
            if let Some(m) = &p.state {
                out.push((format!("{EXP_AVG}{}", p.name), m.exp_avg.shallow_clone()));
                out.push((format!("{EXP_AVG_SQ}{}", p.name), m.exp_avg_sq.shallow_clone()));
                out.push((format!("{STEP}{}", p.name), Tensor::from(m.step)));
            }
        }
        out
    }

    /// Restores what [`Self::state_tensors`] saved; a parameter absent there has no state
    /// yet. Names a tensor that is missing or has the wrong shape.
    pub fn load_state(&mut self, saved: &HashMap<String, Tensor>) -> Result<()> {
        let missing =
            |what: &str| Error::invalid("optimizer state", format!("{what} is missing or has the wrong shape"));
        for p in &mut self.params {
            let Some(step) = saved.get(&format!("{STEP}{}", p.name)) else {
                p.state = None;
                continue;
            };
            let moment = |prefix: &str| -> Result<Tensor> {
                let key = format!("{prefix}{}", p.name);
                match saved.get(&key) {
                    Some(t) if t.size() == p.tensor.size() => {
                        Ok(t.to_kind(p.tensor.kind()).to_device(p.tensor.device()))
                    }
                    _ => Err(missing(&key)),
                }
            };
            let (exp_avg, exp_avg_sq) = (moment(EXP_AVG)?, moment(EXP_AVG_SQ)?);
            p.state = Some(Moments { step: step.to_kind(Kind::Int64).int64_value(&[]), exp_avg, exp_avg_sq });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_parameter_moves_by_its_share_of_the_rate() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let a = (vs.root() / "blocks" / 0).var("w", &[3], nn::Init::Const(1.0));
        let b = (vs.root() / "blocks" / 1).var("w", &[3], nn::Init::Const(1.0));
        let scales = vec![("blocks.0.".to_string(), 0.25), ("blocks.".to_string(), 0.5)];
        let mut opt = AdamOptimizer::new(&vs, Adam::default(), &[0.1]).unwrap().with_scales(&scales);
        let loss = (&a * 2.0 + &b * 2.0).sum(Kind::Float);
        opt.backward_step(&loss);
        // Adam's first step moves each element by lr * scale (the gradient's sign).
        let moved = |t: &Tensor| 1.0 - t.double_value(&[0]);
        assert!((moved(&a) - 0.025).abs() < 1e-6, "the longest prefix wins: {}", moved(&a));
        assert!((moved(&b) - 0.05).abs() < 1e-6, "{}", moved(&b));
    }
}
