//! SQL helpers that need no database: quoting identifiers, ordering tables by their foreign
//! keys.

/// Quotes an SQL identifier with double quotes, doubling any inside.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The order in which to visit `names` so that each comes after the tables its foreign keys
/// name (`parents[i]`: the tables that `names[i]` references, matched without regard to ASCII
/// case), the given order otherwise. A reference to itself or to a table not in `names` is
/// ignored; tables in a cycle keep the given order. Returns indexes into `names`.
pub fn parents_first(names: &[&str], parents: &[Vec<&str>]) -> Vec<usize> {
    let index: std::collections::HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_ascii_lowercase(), i))
        .collect();
    let mut done = vec![false; names.len()];
    let mut visiting = vec![false; names.len()];
    let mut order = Vec::with_capacity(names.len());
    // Depth first, without recursion: a chain of thousands of tables must not overflow the stack.
    for start in 0..names.len() {
        let mut stack = vec![(start, 0usize)];
        while let Some(&mut (i, ref mut next)) = stack.last_mut() {
            if *next == 0 {
                if done[i] || visiting[i] {
                    stack.pop();
                    continue;
                }
                visiting[i] = true;
            }
            let parent = parents.get(i).and_then(|p| p.get(*next));
            *next += 1;
            match parent {
                Some(p) => {
                    if let Some(&j) = index.get(&p.to_ascii_lowercase()) {
                        if !done[j] && !visiting[j] {
                            stack.push((j, 0));
                        }
                    }
                }
                None => {
                    visiting[i] = false;
                    done[i] = true;
                    order.push(i);
                    stack.pop();
                }
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::parents_first;

    #[test]
    fn parents_come_first_and_cycles_keep_their_order() {
        // c -> b -> a; d <-> e (a cycle); f refers to itself and to a missing table.
        let names = ["c", "b", "A", "d", "e", "f"];
        let parents = vec![
            vec!["b"],
            vec!["a"],
            vec![],
            vec!["e"],
            vec!["d"],
            vec!["f", "zz"],
        ];
        let order: Vec<&str> = parents_first(&names, &parents)
            .into_iter()
            .map(|i| names[i])
            .collect();
        assert_eq!(order, ["A", "b", "c", "e", "d", "f"]);
        // Every table exactly once.
        let mut sorted = order.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
    }
}
