//! Grad-CAM (Selvaraju et al. 2017) at a tap of any [`Network`] with a linear head, as
//! pytorch-grad-cam computes it: for a class score `y` and the tap's map `A` `[C, H, W]`,
//! each channel's weight is the mean over H, W of `dy/dA_c`, and the map is
//! `relu(sum_c w_c A_c)` `[H, W]`. For a pooled linear head (every ResNet and EfficientNet
//! head, and logreg on pooled features) `dy/dA_c = W[y, c] / (H W)`, so the map is CAM
//! (Zhou et al. 2016) divided by `H W`: before the relu its mean is `(logit - bias) / (H W)`.
//! Families whose head normalises after pooling (ConvNeXt) get true Grad-CAM by autograd.
//! A head reading a ViT's class token is weighed at the patch tokens entering the last
//! block ([`grad_cam_tokens`]).
use super::{Network, Pool, Tap, TokenNet};
use crate::{Error, Result};
use tch::{Kind, Tensor};

/// Grad-CAM of a batch, before any resizing or scaling.
#[derive(Debug)]
pub struct GradCam {
    /// `relu(sum_c w_c A_c)`: `[N, H, W]` at the tap's resolution.
    pub maps: Tensor,
    /// The same sum before the relu: `[N, H, W]`.
    pub raw: Tensor,
    /// The head's logits `[N, K]` from the same forward pass.
    pub logits: Tensor,
    /// The class each map explains.
    pub classes: Vec<usize>,
}

/// Grad-CAM at `tap` of `net` with the linear head `weight` `[K, D]`, `bias` `[K]`, for
/// normalised images `x` `[N, 3, S, S]`: the class `class` for every image, or each
/// image's top class. The network runs in eval mode; no weight gets a gradient.
pub fn grad_cam(
    net: &dyn Network,
    tap: Tap,
    weight: &Tensor,
    bias: &Tensor,
    x: &Tensor,
    class: Option<usize>,
) -> Result<GradCam> {
    // The stages need no graph: only the map's own gradient is wanted.
    let map = tch::no_grad(|| net.taps_t(x, tap, false).swap_remove(tap.index()));
    grad_cam_on_map(net, tap, weight, bias, &map, class)
}

/// [`grad_cam`] from the tap's map `[N, C, h, w]` already computed (by a faster inference
/// copy of `net`): only the pooling and the head run here.
pub fn grad_cam_on_map(
    net: &dyn Network,
    tap: Tap,
    weight: &Tensor,
    bias: &Tensor,
    map: &Tensor,
    class: Option<usize>,
) -> Result<GradCam> {
    check_class(weight, class)?;
    let map = map.to_kind(Kind::Float).detach().set_requires_grad(true);
    let logits = net.pool_t(&map, tap).linear(weight, Some(bias));
    let (classes, grad) = class_gradient(&logits, &map, class)?;
    weigh(&map, &grad, logits, classes)
}

/// Grad-CAM of a head reading `pool` of a transformer's tokens at `tap`, class token
/// included: the map is the patch tokens entering the tap's last block, whose attention
/// makes the class token (see [`TokenNet`]), and the gradient reaches them through it.
pub fn grad_cam_tokens(
    net: &dyn TokenNet,
    tap: Tap,
    pool: Pool,
    weight: &Tensor,
    bias: &Tensor,
    x: &Tensor,
    class: Option<usize>,
) -> Result<GradCam> {
    check_class(weight, class)?;
    let (tokens, grid) = tch::no_grad(|| net.entering(x, tap));
    let tokens = tokens.to_kind(Kind::Float).detach().set_requires_grad(true);
    let logits = net.onward(&tokens, tap, pool).linear(weight, Some(bias));
    let (classes, grad) = class_gradient(&logits, &tokens, class)?;
    let (map, grad) = tch::no_grad(|| (net.patch_map(&tokens.detach(), grid), net.patch_map(&grad, grid)));
    weigh(&map, &grad, logits, classes)
}

fn check_class(weight: &Tensor, class: Option<usize>) -> Result<()> {
    let k = weight.size()[0] as usize;
    match class.filter(|&c| c >= k) {
        Some(c) => Err(Error::invalid("class to explain", format!("index {c}, but the head has {k} classes"))),
        None => Ok(()),
    }
}

/// The class each image's map explains (`class`, or its top one) and the gradient of
/// those scores with respect to `input`.
fn class_gradient(logits: &Tensor, input: &Tensor, class: Option<usize>) -> Result<(Vec<usize>, Tensor)> {
    let classes: Vec<usize> = match class {
        Some(c) => vec![c; logits.size()[0] as usize],
        None => Vec::<i64>::try_from(logits.argmax(-1, false))?.into_iter().map(|c| c as usize).collect(),
    };
    let idx = Tensor::from_slice(&classes.iter().map(|&c| c as i64).collect::<Vec<_>>()).to_device(input.device());
    // Each image's score depends on its own input only (eval mode), so one backward pass
    // of the sum gives every image its gradient.
    let score = logits.gather(1, &idx.unsqueeze(1), false).sum(Kind::Float);
    let grad = Tensor::f_run_backward(&[score], &[input], false, false)?.swap_remove(0);
    Ok((classes, grad))
}

/// `relu(sum_c w_c A_c)`, `w_c` the mean over H, W of the gradient at channel `c`.
fn weigh(map: &Tensor, grad: &Tensor, logits: Tensor, classes: Vec<usize>) -> Result<GradCam> {
    let raw = tch::no_grad(|| {
        let w = grad.mean_dim([2i64, 3].as_slice(), true, Kind::Float);
        (w * map.detach()).sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
    });
    Ok(GradCam { maps: raw.relu(), raw, logits: logits.detach(), classes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Arch;
    use tch::{nn, Device};

    /// A random ResNet-18 and head, seeded, and a batch of two normalised 64 px images.
    fn setup() -> (nn::VarStore, Box<dyn Network>, Tensor) {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Arch::ResNet18.build(&vs.root());
        let _ = nn::linear(vs.root() / "fc", 512, 5, Default::default());
        (vs, net, Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu)))
    }

    #[test]
    fn for_a_pooled_linear_head_the_map_mean_is_the_logit_less_bias_over_hw() {
        let (vs, net, x) = setup();
        let v = vs.variables();
        let (w, b) = (&v["fc.weight"], &v["fc.bias"]);
        for class in [None, Some(4)] {
            let cam = grad_cam(net.as_ref(), Tap::Layer4, w, b, &x, class).unwrap();
            let (n, h, wd) = (cam.raw.size()[0], cam.raw.size()[1], cam.raw.size()[2]);
            assert_eq!((n, h, wd), (2, 2, 2), "64 px at 1/32");
            for i in 0..n as usize {
                let c = cam.classes[i] as i64;
                let want = (cam.logits.double_value(&[i as i64, c]) - b.double_value(&[c])) / (h * wd) as f64;
                let mean = cam.raw.get(i as i64).mean(Kind::Double).double_value(&[]);
                assert!((mean - want).abs() < 1e-5 * want.abs().max(1.0), "image {i}: {mean} vs {want}");
            }
            let top = Vec::<i64>::try_from(cam.logits.argmax(-1, false)).unwrap();
            let want: Vec<usize> = match class {
                Some(c) => vec![c; 2],
                None => top.iter().map(|&c| c as usize).collect(),
            };
            assert_eq!(cam.classes, want);
            assert!(cam.maps.min().double_value(&[]) >= 0.0);
        }
        // CAM (the head's weights on the map) is H W times it, at any tap.
        let wl3 = w.narrow(1, 0, 256);
        let cam = grad_cam(net.as_ref(), Tap::Layer3, &wl3, b, &x, Some(1)).unwrap();
        let a = tch::no_grad(|| net.taps_t(&x, Tap::Layer3, false).swap_remove(2));
        let zhou = (wl3.get(1).view([1, 256, 1, 1]) * a).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let hw = (cam.raw.size()[1] * cam.raw.size()[2]) as f64;
        let diff = (cam.raw * hw - &zhou).abs().max().double_value(&[]);
        assert!(diff < 1e-4 * zhou.abs().max().double_value(&[]), "CAM vs Grad-CAM: {diff}");
        // From the folded inference copy's map: the same maps.
        let folded = net.inference(&vs, crate::models::Precision::Fp32).map(&x, Tap::Layer4).unwrap();
        let a = grad_cam(net.as_ref(), Tap::Layer4, w, b, &x, None).unwrap();
        let f = grad_cam_on_map(net.as_ref(), Tap::Layer4, w, b, &folded, None).unwrap();
        let diff = (&a.maps - &f.maps).abs().max().double_value(&[]);
        assert!(diff < 1e-4 * a.maps.abs().max().double_value(&[]).max(1e-6), "folded vs unfolded: {diff}");
        assert_eq!(a.classes, f.classes);
        let err = grad_cam(net.as_ref(), Tap::Layer4, w, b, &x, Some(5)).unwrap_err().to_string();
        assert!(err.contains("5 classes"), "{err}");
    }

    /// A small DINOv2-with-registers shape (registers and class token before the patches),
    /// random weights scaled so attention is far from uniform.
    fn small_vit() -> (nn::VarStore, crate::models::Vit, Tensor) {
        use crate::models::vit::config::{Config, Flavour};
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let c = Config {
            flavour: Flavour::Dinov2Registers,
            dim: 32,
            depth: 4,
            heads: 4,
            mlp: 64,
            patch: 8,
            grid: 4,
            eps: 1e-6,
        };
        let vit = crate::models::Vit::with_config(&vs.root(), Arch::Dinov2Vits14Reg, c);
        tch::no_grad(|| {
            for (_, mut v) in vs.variables() {
                let r = Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) * 0.3;
                v.copy_(&r);
            }
        });
        (vs, vit, Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu)))
    }

    #[test]
    fn a_class_token_head_is_weighed_at_the_patch_tokens_entering_the_last_block() {
        let (_vs, vit, x) = small_vit();
        let (w, b) =
            (Tensor::randn([3, 64], (Kind::Float, Device::Cpu)), Tensor::randn([3], (Kind::Float, Device::Cpu)));
        let tokens = vit.token_net().unwrap();
        let cam = grad_cam_tokens(tokens, Tap::Layer4, Pool::ClsMean, &w, &b, &x, Some(2)).unwrap();
        assert_eq!(cam.maps.size(), [2, 4, 4], "32 px in 8 px patches");
        // Entering + onward is the network's own forward.
        let want = tch::no_grad(|| vit.readout_t(&x, Tap::Layer4, Pool::ClsMean, false).linear(&w, Some(&b)));
        let diff = (&cam.logits - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "logits differ by {diff}");
        // The channel weights are the mean gradient of the score at the patch tokens:
        // checked against central differences along a random patch direction.
        let (t0, grid) = tch::no_grad(|| tokens.entering(&x, Tap::Layer4));
        let score = |t: &Tensor| {
            tch::no_grad(|| {
                tokens.onward(t, Tap::Layer4, Pool::ClsMean).linear(&w, Some(&b)).select(1, 2).sum(Kind::Double)
            })
            .double_value(&[])
        };
        let skip = 1 + 4;
        let dir = Tensor::randn([2, 1, 32], (Kind::Float, Device::Cpu)).expand([2, 16, 32], false);
        let along = Tensor::cat(&[Tensor::zeros([2, skip, 32], (Kind::Float, Device::Cpu)), dir.shallow_clone()], 1);
        let eps = 1e-2;
        let numeric = (score(&(&t0 + &along * eps)) - score(&(&t0 - &along * eps))) / (2.0 * eps);
        // Moving every patch by the same `dir` changes the score by sum_c dir_c * sum_p g_pc
        // = h w * sum_c dir_c * w_c, and the map's raw sum is sum_p sum_c w_c A_pc.
        let t = t0.set_requires_grad(true);
        let s = tokens.onward(&t, Tap::Layer4, Pool::ClsMean).linear(&w, Some(&b)).select(1, 2).sum(Kind::Float);
        let g = Tensor::run_backward(&[s], &[&t], false, false).swap_remove(0);
        let g = tokens.patch_map(&g, grid).mean_dim([2i64, 3].as_slice(), false, Kind::Float);
        let analytic = (&g * dir.select(1, 0)).sum(Kind::Double).double_value(&[]) * 16.0;
        assert!((numeric - analytic).abs() < 1e-2 * analytic.abs().max(1.0), "{numeric} vs {analytic}");
        let a = tokens.patch_map(&t.detach(), grid);
        let raw = (g.unsqueeze(-1).unsqueeze(-1) * a).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        assert!((raw - &cam.raw).abs().max().double_value(&[]) < 1e-4);
        // Another class, another map; a class past the head is refused.
        let other = grad_cam_tokens(tokens, Tap::Layer4, Pool::Cls, &w.narrow(1, 0, 32), &b, &x, Some(0)).unwrap();
        assert!((&other.raw - &cam.raw).abs().max().double_value(&[]) > 1e-3);
        assert!(grad_cam_tokens(tokens, Tap::Layer4, Pool::Cls, &w, &b, &x, Some(3)).is_err());
    }
}
