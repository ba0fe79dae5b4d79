//! What a GPU costs and draws: the price per GPU-hour from three kinds of seller and the power
//! per GPU, each figure with where it came from and when. Runner files carry them
//! (`runners/*.yaml` → `economics`), a spec or `kvsweep collect` may override them, and collect
//! turns them into cost per million tokens, tok/s per MW and joules per token
//! (`collect::cost`).

use serde::{Deserialize, Serialize};

/// A runner's price and power figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Economics {
    /// Power per GPU all-in (the GPU, its share of the host, network and cooling), kW.
    pub power: PowerFigure,
    /// Price per GPU-hour from each kind of seller.
    pub prices: Prices,
}

/// A power figure and its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerFigure {
    pub(crate) kw_per_gpu: f64,
    pub source: String,
    /// When the source said it (`YYYY-MM` or `YYYY-MM-DD`).
    pub date: String,
}

/// The three prices InferenceX compares (hyperscaler, neocloud, 3-year rental), each sourced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub hyperscaler: Price,
    pub neocloud: Price,
    pub rental_3y: Price,
}

/// One price per GPU-hour and its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub usd_per_gpu_hour: f64,
    pub source: String,
    /// When the source said it (`YYYY-MM` or `YYYY-MM-DD`).
    pub date: String,
}

/// Which price a figure uses; the order is the summary's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PriceKind {
    Hyperscaler,
    Neocloud,
    #[value(name = "rental_3y")]
    Rental3y,
}

impl PriceKind {
    pub(crate) const ALL: [PriceKind; 3] = [
        PriceKind::Hyperscaler,
        PriceKind::Neocloud,
        PriceKind::Rental3y,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PriceKind::Hyperscaler => "hyperscaler",
            PriceKind::Neocloud => "neocloud",
            PriceKind::Rental3y => "rental_3y",
        }
    }
}

impl Prices {
    pub fn get(&self, kind: PriceKind) -> &Price {
        match kind {
            PriceKind::Hyperscaler => &self.hyperscaler,
            PriceKind::Neocloud => &self.neocloud,
            PriceKind::Rental3y => &self.rental_3y,
        }
    }

    fn get_mut(&mut self, kind: PriceKind) -> &mut Price {
        match kind {
            PriceKind::Hyperscaler => &mut self.hyperscaler,
            PriceKind::Neocloud => &mut self.neocloud,
            PriceKind::Rental3y => &mut self.rental_3y,
        }
    }
}

impl Economics {
    /// The first figure that is not a positive finite number, as (field, value).
    pub(crate) fn invalid_figure(&self) -> Option<(String, f64)> {
        let mut figures = vec![("power.kw_per_gpu".to_owned(), self.power.kw_per_gpu)];
        for kind in PriceKind::ALL {
            figures.push((
                format!("prices.{}.usd_per_gpu_hour", kind.as_str()),
                self.prices.get(kind).usd_per_gpu_hour,
            ));
        }
        figures
            .into_iter()
            .find(|(_, v)| !(v.is_finite() && *v > 0.0))
    }

    /// These figures with a spec's in place of theirs.
    pub(crate) fn with_spec(&self, spec: &SpecEconomics) -> Economics {
        let mut e = self.clone();
        if let Some(power) = &spec.power {
            e.power = power.clone();
        }
        for (kind, price) in spec.price_list() {
            *e.prices.get_mut(kind) = price.clone();
        }
        e
    }

    /// These figures with `o`'s in place of theirs.
    pub(crate) fn overridden(&self, o: &Override) -> Economics {
        let mut e = self.clone();
        if let Some(kw) = o.power_kw_per_gpu {
            e.power = PowerFigure {
                kw_per_gpu: kw,
                source: o.source.clone(),
                date: String::new(),
            };
        }
        for &(kind, usd) in &o.prices {
            *e.prices.get_mut(kind) = Price {
                usd_per_gpu_hour: usd,
                source: o.source.clone(),
                date: String::new(),
            };
        }
        e
    }
}

/// Where a cell's power figure came from (`summary.csv` → `energy_basis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnergyBasis {
    /// GPU power sampled during the run (`gpu.csv`).
    Measured,
    /// The runner's power figure per GPU: no samples.
    Estimated,
    /// The simulator's throughput, priced and powered as the runner it modelled.
    Simulated,
}

/// A sweep spec's figures in place of its runners' (`economics:` in a native spec, carried to
/// collect in each cell's `cell.json`): any of them, each with its own source and date.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecEconomics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerFigure>,
    #[serde(default)]
    pub prices: SpecPrices,
}

/// The prices a spec gives; the others stay the runner's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecPrices {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperscaler: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neocloud: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rental_3y: Option<Price>,
}

impl SpecEconomics {
    /// The first figure that is not a positive finite number, as (field, value).
    pub(crate) fn invalid_figure(&self) -> Option<(String, f64)> {
        let mut figures: Vec<(String, f64)> = self
            .power
            .iter()
            .map(|p| ("power.kw_per_gpu".to_owned(), p.kw_per_gpu))
            .collect();
        for (kind, price) in self.price_list() {
            figures.push((
                format!("prices.{}.usd_per_gpu_hour", kind.as_str()),
                price.usd_per_gpu_hour,
            ));
        }
        figures
            .into_iter()
            .find(|(_, v)| !(v.is_finite() && *v > 0.0))
    }

    fn price_list(&self) -> impl Iterator<Item = (PriceKind, &Price)> {
        let p = &self.prices;
        [
            (PriceKind::Hyperscaler, p.hyperscaler.as_ref()),
            (PriceKind::Neocloud, p.neocloud.as_ref()),
            (PriceKind::Rental3y, p.rental_3y.as_ref()),
        ]
        .into_iter()
        .filter_map(|(kind, price)| Some((kind, price?)))
    }
}

/// Figures given in place of a runner's (`kvsweep collect --gpu-price`, `--gpu-power-kw`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Override {
    pub(crate) power_kw_per_gpu: Option<f64>,
    pub prices: Vec<(PriceKind, f64)>,
    /// Where they came from, for the report (e.g. "kvsweep collect --gpu-price").
    pub source: String,
}

/// Parses `KIND=USD` (`neocloud=2.10`), the form of `--gpu-price`.
pub(crate) fn parse_price(text: &str) -> Result<(PriceKind, f64), String> {
    let (kind, usd) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected KIND=USD_PER_GPU_HOUR, e.g. neocloud=2.10"))?;
    let kind = <PriceKind as clap::ValueEnum>::from_str(kind.trim(), true)
        .map_err(|_| format!("`{kind}`: a price is one of hyperscaler, neocloud, rental_3y"))?;
    let usd: f64 = usd
        .trim()
        .parse()
        .map_err(|e| format!("`{usd}`: not a price in dollars per GPU-hour: {e}"))?;
    if !(usd.is_finite() && usd > 0.0) {
        return Err(format!("`{usd}`: a price must be above zero"));
    }
    Ok((kind, usd))
}

/// Parses a power per GPU in kW, the form of `--gpu-power-kw`.
pub(crate) fn parse_power_kw(text: &str) -> Result<f64, String> {
    let kw: f64 = text
        .trim()
        .parse()
        .map_err(|e| format!("`{text}`: not a power in kW: {e}"))?;
    if !(kw.is_finite() && kw > 0.0) {
        return Err(format!("`{text}`: a power must be above zero"));
    }
    Ok(kw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_price_override_names_its_kind() {
        assert_eq!(parse_price("rental_3y=2.5"), Ok((PriceKind::Rental3y, 2.5)));
        assert!(parse_price("spot=1").unwrap_err().contains("hyperscaler"));
        assert!(
            parse_price("neocloud=-1")
                .unwrap_err()
                .contains("above zero")
        );
        assert!(parse_price("neocloud").unwrap_err().contains("KIND="));
    }
}
