public import Foundation
public import Hummingbird

/// What a service's contract test compares: the operations an OpenAPI document names and the
/// ones a router serves, each as `"METHOD /path"` with parameters as `{name}`.
public enum OpenAPIContract {
    /// Every operation of the document's `paths` (get, put, post, patch, delete).
    public static func documentedOperations(_ json: String) throws -> Set<String> {
        guard let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
            let paths = object["paths"] as? [String: [String: Any]]
        else { throw NotADocument() }
        var operations = Set<String>()
        for (path, items) in paths {
            for method in items.keys where ["get", "put", "post", "patch", "delete"].contains(method) {
                operations.insert("\(method.uppercased()) \(path)")
            }
        }
        return operations
    }

    /// The text is not JSON with a `paths` object.
    public struct NotADocument: Error {}

    /// Every route of `router`. Hummingbird writes a parameter as `{name}`, as the documents do.
    public static func routedOperations<Context>(_ router: Router<Context>) -> Set<String> {
        Set(router.routes.map { "\($0.method.rawValue) \($0.path.description.hasPrefix("/") ? "" : "/")\($0.path.description)" })
    }
}
