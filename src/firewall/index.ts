/** The Firewall seam: the interface, the backend-neutral desired state, the registry and router, the memory fake. */
export * from './types.js';
export { MemoryFirewall } from './memory.js';
export { RoutedFirewall } from './router.js';
export { BACKENDS, REGISTRY, chosenBackend, defaultBackend, type BackendEntry, type BackendName, type BackendOptions, type DefaultBackend } from './registry.js';
