import Foundation

/// The attention report as one self-contained HTML page (`index.html` next to `attention.json`).
///
/// Everything the page shows is inside it: inline CSS, the PNGs as base64 `data:` URIs, no
/// scripts, no fonts or files fetched, so it can be mailed or opened offline. Every string
/// that comes from the model or the command line is HTML-escaped (ONNX tensor and node
/// names are free text and can hold `<`, `>`, `&` and quotes).
public enum HTMLReport {
    /// One self-contained HTML page: a title with the model file name, a short legend (what
    /// channel and spatial maps are, the fixed [0,1] color scale), then one section per
    /// attention block showing that block's maps side by side (each: kind, tensor name,
    /// producing node, shape, min/max/mean, and its PNGs embedded as data: URIs).
    ///
    /// `images` maps each map's PNG file name (``AttentionMapRecord/files`` entries ending in
    /// .png) to its PNG bytes; a PNG missing from `images` is named in the page instead.
    /// Blocks appear in block order, maps within a block in execution order.
    public static func render(_ report: AttentionReport, images: [String: [UInt8]]) -> String {
        let modelName = (report.model as NSString).lastPathComponent
        var html = """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Attention maps — \(escape(modelName))</title>
        <style>\(style)</style>
        </head>
        <body>
        <h1>Attention maps — \(escape(modelName))</h1>

        """
        var facts = ["model <code>\(escape(report.model))</code>"]
        if let input = report.input { facts.append("input <code>\(escape(input))</code>") }
        facts.append("batch \(report.batch)")
        facts.append("\(report.maps.count) map\(report.maps.count == 1 ? "" : "s") in \(Set(report.maps.map(\.block)).count) block\(Set(report.maps.map(\.block)).count == 1 ? "" : "s")")
        html += "<p class=\"facts\">\(facts.joined(separator: " · "))</p>\n"
        html += legend(perMap: report.mapScale == "per-map")

        if report.maps.isEmpty {
            html += "<p class=\"note\">No attention maps were found in this model.</p>\n"
        }
        let blocks = Dictionary(grouping: report.maps, by: \.block)
        for block in blocks.keys.sorted() {
            let maps = (blocks[block] ?? []).sorted { $0.index < $1.index }
            html += "<section>\n<h2>Block \(block)</h2>\n<div class=\"maps\">\n"
            for map in maps { html += figure(map, images: images) }
            html += "</div>\n</section>\n"
        }
        html += "</body>\n</html>\n"
        return html
    }

    /// One map: its facts and its pictures.
    static func figure(_ map: AttentionMapRecord, images: [String: [UInt8]]) -> String {
        var html = "<figure class=\"map \(escape(cssKind(map.kind)))\">\n"
        html += "<figcaption><span class=\"kind\">\(escape(map.kind))</span> <span class=\"index\">#\(map.index)</span></figcaption>\n"
        html += "<table>\n"
        html += "<tr><th>tensor</th><td><code>\(escape(map.tensor))</code></td></tr>\n"
        html += "<tr><th>node</th><td><code>\(escape(map.node))</code> (\(escape(map.opType)))</td></tr>\n"
        html += "<tr><th>shape</th><td>[\(map.shape.map(String.init).joined(separator: ", "))]</td></tr>\n"
        html += "<tr><th>min / max / mean</th><td>\(number(map.min)) / \(number(map.max)) / \(number(map.mean))</td></tr>\n"
        if let range = map.displayRange, range.count == 2, range != [0, 1] {
            html += "<tr><th>colors</th><td>stretched: \(number(range[0])) → \(number(range[1]))</td></tr>\n"
        }
        html += "</table>\n"
        if let note = map.note { html += "<p class=\"note\">\(escape(note))</p>\n" }
        let pngs = map.files.filter { $0.lowercased().hasSuffix(".png") }
        for name in pngs {
            if let bytes = images[name] {
                let uri = "data:image/png;base64," + Data(bytes).base64EncodedString()
                html += "<div class=\"picture\"><img src=\"\(uri)\" alt=\"\(escape(map.kind)) attention map \(escape(map.tensor))\">"
                html += "<div class=\"file\">\(escape(name))</div></div>\n"
            } else {
                html += "<p class=\"note\">picture <code>\(escape(name))</code> not available</p>\n"
            }
        }
        if pngs.isEmpty { html += "<p class=\"note\">no picture for this map</p>\n" }
        let others = map.files.filter { !$0.lowercased().hasSuffix(".png") }
        if !others.isEmpty {
            html += "<div class=\"file\">data: \(others.map { "<code>\(escape($0))</code>" }.joined(separator: ", "))</div>\n"
        }
        html += "</figure>\n"
        return html
    }

    /// `kind` as a CSS class: only the known kinds, so a model cannot inject class names.
    static func cssKind(_ kind: String) -> String {
        ["channel", "spatial"].contains(kind) ? kind : kind == "self-attention" ? "self-attention" : "other"
    }

    /// A statistic with 4 decimals ("nan"/"inf" spelled out).
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return value.isNaN ? "NaN" : (value > 0 ? "+∞" : "−∞") }
        return String(format: "%.4f", value)
    }

    /// Escapes text for HTML element content and double- or single-quoted attributes.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    /// The CSS gradient of ``AttentionRendering/color(_:)``: 17 stops at t = 0, 1/16, …, 1.
    static var gradient: String {
        let stops = (0...16).map { i -> String in
            let c = AttentionRendering.color(Float(i) / 16)
            return "rgb(\(c.0),\(c.1),\(c.2)) \(i * 100 / 16)%"
        }
        return "linear-gradient(to right, \(stops.joined(separator: ", ")))"
    }

    static func legend(perMap: Bool) -> String {
        let scale = perMap ? """
        <p>Heat-map colors are <b>stretched per map</b> (<code>--map-scale per-map</code>): each map's own minimum is the
        left end of the scale and its maximum the right end, so faint structure shows; the range is given beside each map
        and on its scale bar, and the same color does <b>not</b> mean the same weight in two maps. Channel bars keep the
        fixed 0 to 1 axis:
        <span class="scale"><span>min</span><span class="bar" style="background: \(gradient)"></span><span>max</span></span></p>
        """ : """
        <p>Colors use a <b>fixed scale from 0 to 1</b> (the gates are sigmoid outputs), not stretched per map, so the same
        color means the same weight everywhere on this page:
        <span class="scale"><span>0</span><span class="bar" style="background: \(gradient)"></span><span>1</span></span>
        (matplotlib's viridis; 0.5 is teal; <code>--map-scale per-map</code> stretches each map instead).</p>
        """
        return """
        <div class="legend">
        <p><b>Channel attention</b> (one weight per feature channel, shape like [N, C, 1, 1]) is drawn as a bar chart:
        one bar per channel, in channel order; very wide layers average neighbouring channels into one bar.
        <b>Spatial attention</b> (one weight per position, shape like [N, 1, H, W]) is drawn as a heat map,
        resized bilinearly to the input; when the input image is known the picture shows the input, the heat map,
        and the heat map blended over a grayscale copy of the input.</p>
        \(scale)
        </div>

        """
    }

    static let style = """
    body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px; color: #222; background: #fafafa; }
    h1 { font-size: 1.5em; margin: 0 0 4px; word-break: break-all; }
    h2 { font-size: 1.15em; margin: 0 0 10px; }
    code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.92em; word-break: break-all; }
    .facts { color: #555; margin: 0 0 14px; }
    .legend { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 4px 14px; margin-bottom: 20px; max-width: 980px; line-height: 1.45; }
    .scale { display: inline-flex; align-items: center; gap: 6px; vertical-align: middle; }
    .scale .bar { display: inline-block; width: 180px; height: 14px; border: 1px solid #999; }
    section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 12px 14px; margin-bottom: 18px; }
    .maps { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
    figure.map { margin: 0; padding: 8px; border: 1px solid #e4e4e4; border-radius: 4px; flex: 1 1 380px; min-width: 0; max-width: max-content; }
    figcaption { font-weight: 600; margin-bottom: 4px; }
    figcaption .index { color: #888; font-weight: normal; }
    .channel .kind { color: #2a6f97; }
    .spatial .kind { color: #2b8a3e; }
    .other .kind { color: #7a5c00; }
    .self-attention .kind { color: #862e9c; }
    table { border-collapse: collapse; font-size: 0.9em; margin-bottom: 6px; }
    th { text-align: left; color: #666; font-weight: normal; padding: 1px 10px 1px 0; vertical-align: top; white-space: nowrap; }
    td { padding: 1px 0; max-width: 520px; }
    .picture img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; }
    .file { color: #888; font-size: 0.8em; margin-top: 2px; word-break: break-all; }
    .note { color: #a33; font-size: 0.9em; }
    """
}
