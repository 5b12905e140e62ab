// Resize (and Upsample): placeholder, filled in by the Resize work.

extension OpRegistry {
    mutating func registerResize() {}
}
