// Image references are the domain's (normalizing one is pure): the CRI edge and the
// commands read them from there; the containerd adapters keep importing them here.
export * from '../../domain/image-ref.js';
