//! ImageNet-1k class names (torchvision's list), bundled in `assets/`.

use std::sync::OnceLock;

static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();

/// The 1000 ImageNet class names, by class index.
pub fn imagenet_classes() -> &'static [&'static str] {
    NAMES.get_or_init(|| {
        include_str!("../assets/imagenet_classes.txt")
            .lines()
            .filter(|l| !l.is_empty())
            .collect()
    })
}

/// The name of ImageNet class `index` ("class 1234" when out of range).
pub fn imagenet_label(index: usize) -> String {
    imagenet_classes()
        .get(index)
        .map_or_else(|| format!("class {index}"), |s| s.to_string())
}

/// Finds a class by index ("281") or by name (exact, then unique substring, ignoring case).
pub fn find_class(query: &str) -> Option<usize> {
    let classes = imagenet_classes();
    if let Ok(index) = query.trim().parse::<usize>() {
        return (index < classes.len()).then_some(index);
    }
    let q = query.trim().to_lowercase();
    if let Some(i) = classes.iter().position(|c| c.to_lowercase() == q) {
        return Some(i);
    }
    let mut hits = classes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.to_lowercase().contains(&q));
    match (hits.next(), hits.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousand_classes_with_known_names() {
        assert_eq!(imagenet_classes().len(), 1000);
        assert_eq!(imagenet_label(281), "tabby");
        assert_eq!(imagenet_label(285), "Egyptian cat");
        assert_eq!(find_class("tiger cat"), Some(282));
        assert_eq!(find_class("340"), Some(340));
        assert_eq!(find_class("zebra"), Some(340));
        assert_eq!(find_class("1000"), None);
    }
}
