fn main() {
    println!("rkectl");
}
