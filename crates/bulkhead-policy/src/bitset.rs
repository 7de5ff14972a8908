//! A fixed-size set of small integers (endpoint or group indices), one bit each.

/// A set over `0..len`; bits at or beyond `len` are always zero.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Bitset {
    words: Vec<u64>,
}

pub(crate) fn words_for(len: usize) -> usize {
    len.div_ceil(64)
}

impl Bitset {
    pub(crate) fn empty(len: usize) -> Self {
        Self {
            words: vec![0; words_for(len)],
        }
    }

    pub(crate) fn full(len: usize) -> Self {
        let mut words = vec![u64::MAX; words_for(len)];
        if !len.is_multiple_of(64)
            && let Some(last) = words.last_mut()
        {
            *last = (1u64 << (len % 64)) - 1;
        }
        Self { words }
    }

    pub(crate) fn from_words(words: Vec<u64>) -> Self {
        Self { words }
    }

    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }

    pub(crate) fn insert(&mut self, i: usize) {
        if let Some(word) = self.words.get_mut(i / 64) {
            *word |= 1u64 << (i % 64);
        }
    }

    pub(crate) fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|word| word & (1u64 << (i % 64)) != 0)
    }

    pub(crate) fn union_with(&mut self, other: &Bitset) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    pub(crate) fn intersect_with(&mut self, other: &Bitset) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    /// Grows (or shrinks) the set to hold `0..len`.
    pub(crate) fn resize(&mut self, len: usize) {
        self.words.resize(words_for(len), 0);
    }

    /// The members of `self` not in `other`.
    pub(crate) fn difference(&self, other: &Bitset) -> Bitset {
        Bitset {
            words: self
                .words
                .iter()
                .enumerate()
                .map(|(i, w)| w & !other.words.get(i).copied().unwrap_or(0))
                .collect(),
        }
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether any bit in `start..end` is set.
    #[cfg(test)]
    pub(crate) fn any_in(&self, start: usize, end: usize) -> bool {
        any_in(&self.words, start, end)
    }

    pub(crate) fn ones(&self) -> Ones<'_> {
        ones(&self.words)
    }
}

/// Whether any bit in `start..end` of `words` is set.
pub(crate) fn any_in(words: &[u64], start: usize, end: usize) -> bool {
    if start >= end {
        return false;
    }
    let (first, last) = (start / 64, (end - 1) / 64);
    for w in first..=last {
        let Some(&word) = words.get(w) else {
            return false;
        };
        let lo = if w == first { start % 64 } else { 0 };
        let hi = if w == last { (end - 1) % 64 } else { 63 };
        let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
        if word & mask != 0 {
            return true;
        }
    }
    false
}

pub(crate) fn ones(words: &[u64]) -> Ones<'_> {
    Ones {
        words,
        index: 0,
        current: words.first().copied().unwrap_or(0),
    }
}

/// The set bits of a word slice, ascending.
#[derive(Debug)]
pub(crate) struct Ones<'a> {
    words: &'a [u64],
    index: usize,
    current: u64,
}

impl Iterator for Ones<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.current == 0 {
            self.index += 1;
            self.current = *self.words.get(self.index)?;
        }
        let bit = self.current.trailing_zeros() as usize;
        self.current &= self.current - 1;
        Some(self.index * 64 + bit)
    }
}

/// Transposes a 64×64 bit block in place: bit `j` of `block[i]` moves to bit `i` of
/// `block[j]` (Hacker's Delight, section 7-3).
pub(crate) fn transpose64(block: &mut [u64; 64]) {
    let mut width = 32;
    let mut mask: u64 = 0x0000_0000_FFFF_FFFF;
    while width != 0 {
        let mut k = 0;
        while k < 64 {
            let t = ((block[k] >> width) ^ block[k + width]) & mask;
            block[k] ^= t << width;
            block[k + width] ^= t;
            k = (k + width + 1) & !width;
        }
        width >>= 1;
        mask ^= mask << width;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose64_moves_bit_j_of_row_i_to_bit_i_of_row_j() {
        let mut block = [0u64; 64];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for row in &mut block {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *row = seed;
        }
        let original = block;
        transpose64(&mut block);
        for (i, row) in original.iter().enumerate() {
            for (j, column) in block.iter().enumerate() {
                assert_eq!((row >> j) & 1, (column >> i) & 1, "{i},{j}");
            }
        }
    }

    #[test]
    fn any_in_respects_range_ends() {
        let mut set = Bitset::empty(200);
        set.insert(70);
        assert!(set.any_in(70, 71));
        assert!(set.any_in(0, 200));
        assert!(!set.any_in(0, 70));
        assert!(!set.any_in(71, 200));
        assert!(!set.any_in(5, 5));
        assert_eq!(set.ones().collect::<Vec<_>>(), vec![70]);
        assert_eq!(Bitset::full(130).count(), 130);
    }
}
