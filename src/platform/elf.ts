/**
 * Tiny static ELF programs that only call exit_group(0), one per architecture, to prove a
 * machine can execute that architecture (natively or through a binfmt_misc emulator), as
 * BuildKit's util/archutil does with its embedded binaries.
 *
 *   const bytes = exitElf('arm64');   // Buffer; write it, chmod +x, run it, expect exit 0
 *   exitElf('s390x', 42);             // the same program exiting 42
 *   ELF_ARCHITECTURES                     // the GOARCH names exitElf knows
 *
 * Each program is one ELF header, one PT_LOAD program header mapping the whole file
 * read+execute at 0x400000, and a few instructions placed right after the headers.
 */

import { PolyarchError } from '../util/errors.js';

interface ElfTarget {
  /** 64-bit (ELFCLASS64) or 32-bit. */
  bits: 32 | 64;
  littleEndian: boolean;
  /** e_machine. */
  machine: number;
  /** e_flags (ABI bits some loaders check). */
  flags: number;
  /** exit_group(status) as 32-bit instruction words (stored in the target's byte order) or raw bytes. */
  code: (status: number) => readonly number[] | Buffer;
}

// Syscall numbers: exit_group is 94 on the generic table (arm64, riscv64, loong64), 231 on
// x86_64, 252 on i386, 248 on arm EABI and s390x, 234 on ppc64, 5205 on mips n64, 4246 on mips o32.
const TARGETS: Record<string, ElfTarget> = {
  amd64: {
    bits: 64,
    littleEndian: true,
    machine: 62, // EM_X86_64
    flags: 0,
    // mov eax, 231; mov edi, status; syscall
    code: (n) => Buffer.from([0xb8, 0xe7, 0x00, 0x00, 0x00, 0xbf, n, 0x00, 0x00, 0x00, 0x0f, 0x05]),
  },
  '386': {
    bits: 32,
    littleEndian: true,
    machine: 3, // EM_386
    flags: 0,
    // mov eax, 252; mov ebx, status; int 0x80
    code: (n) => Buffer.from([0xb8, 0xfc, 0x00, 0x00, 0x00, 0xbb, n, 0x00, 0x00, 0x00, 0xcd, 0x80]),
  },
  arm64: {
    bits: 64,
    littleEndian: true,
    machine: 183, // EM_AARCH64
    flags: 0,
    // mov x0, #status; mov x8, #94; svc #0
    code: (n) => [0xd2800000 | (n << 5), 0xd2800bc8, 0xd4000001],
  },
  arm: {
    bits: 32,
    littleEndian: true,
    machine: 40, // EM_ARM
    flags: 0x05000000, // EABI version 5: the kernel and QEMU take syscalls from r7
    // mov r0, #status; mov r7, #248; svc #0   (ARMv5-compatible A32 encodings)
    code: (n) => [0xe3a00000 | n, 0xe3a070f8, 0xef000000],
  },
  ppc64le: {
    bits: 64,
    littleEndian: true,
    machine: 21, // EM_PPC64
    flags: 2, // ELFv2 ABI: e_entry is code, not a function descriptor
    // li r0, 234; li r3, status; sc
    code: (n) => [0x380000ea, 0x38600000 | n, 0x44000002],
  },
  ppc64: {
    bits: 64,
    littleEndian: false,
    machine: 21,
    flags: 2,
    code: (n) => [0x380000ea, 0x38600000 | n, 0x44000002],
  },
  s390x: {
    bits: 64,
    littleEndian: false,
    machine: 22, // EM_S390
    flags: 0,
    // lghi %r2, status; svc 248
    code: (n) => Buffer.from([0xa7, 0x29, 0x00, n, 0x0a, 0xf8]),
  },
  riscv64: {
    bits: 64,
    littleEndian: true,
    machine: 243, // EM_RISCV
    flags: 0,
    // li a7, 94; li a0, status; ecall
    code: (n) => [0x05e00893, 0x00000513 | (n << 20), 0x00000073],
  },
  mips64le: {
    bits: 64,
    littleEndian: true,
    machine: 8, // EM_MIPS
    flags: 0x80000000, // EF_MIPS_ARCH_64R2, n64 ABI
    // li v0, 5205; li a0, status; syscall
    code: (n) => [0x24021455, 0x24040000 | n, 0x0000000c],
  },
  mips64: {
    bits: 64,
    littleEndian: false,
    machine: 8,
    flags: 0x80000000,
    code: (n) => [0x24021455, 0x24040000 | n, 0x0000000c],
  },
  mipsle: {
    bits: 32,
    littleEndian: true,
    machine: 8,
    flags: 0x70001000, // EF_MIPS_ARCH_32R2 | EF_MIPS_ABI_O32
    // li v0, 4246; li a0, status; syscall
    code: (n) => [0x24021096, 0x24040000 | n, 0x0000000c],
  },
  mips: {
    bits: 32,
    littleEndian: false,
    machine: 8,
    flags: 0x70001000,
    code: (n) => [0x24021096, 0x24040000 | n, 0x0000000c],
  },
  loong64: {
    bits: 64,
    littleEndian: true,
    machine: 258, // EM_LOONGARCH
    flags: 0x43, // LP64D ABI, object file v1
    // ori $a7, $zero, 94; ori $a0, $zero, status; syscall 0
    code: (n) => [0x0381780b, 0x03800004 | (n << 10), 0x002b0000],
  },
};

/** The architectures (GOARCH names) `exitElf` can build a program for. */
export const ELF_ARCHITECTURES: readonly string[] = Object.keys(TARGETS);

const BASE = 0x400000;

/**
 * A static ELF executable for `architecture` (GOARCH name) that exits with `status`
 * (default 0, at most 255). A non-zero status lets a test prove the instructions really ran.
 */
export function exitElf(architecture: string, status = 0): Buffer {
  const t = TARGETS[architecture];
  if (!t)
    throw new PolyarchError(
      'UNSUPPORTED',
      `no test program for architecture ${JSON.stringify(architecture)}`,
    );
  if (!Number.isInteger(status) || status < 0 || status > 255)
    throw new PolyarchError('INVALID_ARGUMENT', `exit status ${status} is not 0..255`);
  const words = t.code(status);
  let code: Buffer;
  if (Buffer.isBuffer(words)) code = words;
  else {
    code = Buffer.alloc(words.length * 4);
    for (const [i, w] of words.entries()) {
      if (t.littleEndian) code.writeUInt32LE(w >>> 0, i * 4);
      else code.writeUInt32BE(w >>> 0, i * 4);
    }
  }
  const is64 = t.bits === 64;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  const codeOffset = ehsize + phentsize;
  const size = codeOffset + code.length;
  const b = Buffer.alloc(size);
  const le = t.littleEndian;
  const u16 = (v: number, o: number) => (le ? b.writeUInt16LE(v, o) : b.writeUInt16BE(v, o));
  const u32 = (v: number, o: number) => (le ? b.writeUInt32LE(v >>> 0, o) : b.writeUInt32BE(v >>> 0, o));
  const u64 = (v: number, o: number) =>
    le ? b.writeBigUInt64LE(BigInt(v), o) : b.writeBigUInt64BE(BigInt(v), o);
  const addr = is64 ? u64 : u32;
  const asz = is64 ? 8 : 4;

  // e_ident: magic, class, data, version, OS ABI (SYSV), padding.
  b.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, le ? 1 : 2, 1, 0], 0);
  u16(2, 16); // e_type = ET_EXEC
  u16(t.machine, 18);
  u32(1, 20); // e_version
  let o = 24;
  addr(BASE + codeOffset, o); // e_entry
  o += asz;
  addr(ehsize, o); // e_phoff
  o += asz;
  addr(0, o); // e_shoff
  o += asz;
  u32(t.flags, o);
  o += 4;
  u16(ehsize, o);
  u16(phentsize, o + 2);
  u16(1, o + 4); // e_phnum
  u16(is64 ? 64 : 40, o + 6); // e_shentsize
  u16(0, o + 8); // e_shnum
  u16(0, o + 10); // e_shstrndx

  // Program header: PT_LOAD, R+X, the whole file at BASE. 64 KiB alignment suits every page size.
  const p = ehsize;
  const PT_LOAD = 1;
  const PF_RX = 5;
  if (is64) {
    u32(PT_LOAD, p);
    u32(PF_RX, p + 4);
    u64(0, p + 8); // p_offset
    u64(BASE, p + 16); // p_vaddr
    u64(BASE, p + 24); // p_paddr
    u64(size, p + 32); // p_filesz
    u64(size, p + 40); // p_memsz
    u64(0x10000, p + 48); // p_align
  } else {
    u32(PT_LOAD, p);
    u32(0, p + 4); // p_offset
    u32(BASE, p + 8);
    u32(BASE, p + 12);
    u32(size, p + 16);
    u32(size, p + 20);
    u32(PF_RX, p + 24);
    u32(0x10000, p + 28);
  }
  code.copy(b, codeOffset);
  return b;
}
