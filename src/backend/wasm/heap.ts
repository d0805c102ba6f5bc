/**
 * A first-fit allocator over a region of a WebAssembly.Memory (byte offsets, 64-byte aligned).
 * Freed blocks coalesce with their neighbours; when nothing fits the memory grows by whole pages
 * and the new pages join the free list. Nothing is ever returned to the OS, so a steady-state
 * workload that frees what it allocates keeps memory.buffer.byteLength flat.
 */
const ALIGN = 64;
const PAGE = 65536;

interface Block { off: number; size: number }

export class WasmHeap {
  private free: Block[] = [];
  private used = new Map<number, number>();

  /** Manages [start, memory end); `onGrow` runs after every memory.grow. */
  constructor(private readonly memory: WebAssembly.Memory, start: number, private readonly onGrow: () => void) {
    const s = align(start);
    const end = memory.buffer.byteLength;
    if (end > s) this.free.push({ off: s, size: end - s });
  }

  /** Returns the byte offset of a block of at least `bytes` bytes (64-byte aligned). */
  alloc(bytes: number): number {
    const size = Math.max(ALIGN, align(bytes));
    let i = this.free.findIndex((b) => b.size >= size);
    if (i < 0) { this.grow(size); i = this.free.findIndex((b) => b.size >= size); }
    const b = this.free[i]!;
    const off = b.off;
    if (b.size === size) this.free.splice(i, 1);
    else { b.off += size; b.size -= size; }
    this.used.set(off, size);
    return off;
  }

  /** Frees a block returned by alloc; freeing an unknown offset is an error. */
  release(off: number): void {
    const size = this.used.get(off);
    if (size === undefined) throw new Error(`wasm heap: free of ${off}, which is not an allocated block (double free?)`);
    this.used.delete(off);
    let i = 0;
    while (i < this.free.length && this.free[i]!.off < off) i++;
    this.free.splice(i, 0, { off, size });
    const next = this.free[i + 1];
    if (next && off + size === next.off) { this.free[i]!.size += next.size; this.free.splice(i + 1, 1); }
    const prev = this.free[i - 1];
    if (prev && prev.off + prev.size === off) { prev.size += this.free[i]!.size; this.free.splice(i, 1); }
  }

  /** Bytes currently allocated. */
  get usedBytes(): number { let s = 0; for (const v of this.used.values()) s += v; return s; }

  private grow(size: number): void {
    const end = this.memory.buffer.byteLength;
    const last = this.free[this.free.length - 1];
    const tailFree = last && last.off + last.size === end ? last.size : 0;
    const pages = Math.ceil((size - tailFree) / PAGE);
    try {
      this.memory.grow(pages);
    } catch {
      throw new Error(`wasm backend: cannot grow memory by ${pages} pages (${(pages * PAGE / 2 ** 20).toFixed(0)} MB) ` +
        `beyond ${(end / 2 ** 20).toFixed(0)} MB; free unused tensors or create the backend with a larger maxMemoryMB`);
    }
    if (last && tailFree > 0) last.size += pages * PAGE;
    else this.free.push({ off: end, size: pages * PAGE });
    this.onGrow();
  }
}

function align(x: number): number { return Math.ceil(x / ALIGN) * ALIGN; }
