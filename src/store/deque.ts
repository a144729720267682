/** A FIFO that can also be popped at the tail (amortised O(1); the head's slack is cut when it grows). */
export class Deque<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  first(): T | undefined {
    return this.items[this.head];
  }
  last(): T | undefined {
    return this.length > 0 ? this.items[this.items.length - 1] : undefined;
  }
  shift(): T | undefined {
    if (this.length === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
  pop(): T | undefined {
    if (this.length === 0) return undefined;
    return this.items.pop();
  }
  clear(): void {
    this.items = [];
    this.head = 0;
  }
}
